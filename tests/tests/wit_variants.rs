//! Each synchronous WIT variant (WASIp2, under `wit/p2`) is its source
//! (WASIp3, under `wit`) with `async func` written `func`, and nothing else
//! differs (wit/README.md).

use shop_tests::workspace_root;

/// (source, synchronous variant) of each of the shop's WIT packages.
const VARIANTS: [(&str, &str); 2] =
    [("wit/inventory.wit", "wit/p2/inventory.wit"), ("wit/payments/provider.wit", "wit/p2/payments/provider.wit")];

#[test]
fn each_synchronous_wit_variant_is_its_source_without_async() {
    let read = |path: &str| std::fs::read_to_string(workspace_root().join(path)).unwrap();
    for (source_path, p2_path) in VARIANTS {
        let source = read(source_path);
        assert!(source.contains("async func"), "{source_path} declares async functions");
        let expected = source.replace("async func", "func");
        let p2 = read(p2_path);
        let first_difference = expected.lines().zip(p2.lines()).position(|(a, b)| a != b);
        assert!(
            expected == p2,
            "{p2_path} differs from {source_path} other than by `async` (first differing line: {:?}); regenerate it: sed 's/async func/func/g' {source_path} > {p2_path}",
            first_difference.map(|i| i + 1)
        );
    }
}

/// Every `.wit` file under `wit/` is one of the pairs above, so a new
/// package cannot skip the check.
#[test]
fn every_wit_file_is_in_a_checked_pair() {
    fn wit_files(dir: &std::path::Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                wit_files(&path, found);
            } else if path.extension().is_some_and(|e| e == "wit") {
                found.push(path.strip_prefix(workspace_root()).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut found = Vec::new();
    wit_files(&workspace_root().join("wit"), &mut found);
    found.sort();
    let mut paired: Vec<String> = VARIANTS.iter().flat_map(|(a, b)| [a.to_string(), b.to_string()]).collect();
    paired.sort();
    assert_eq!(found, paired);
}
