//! `wit/p2/inventory.wit` (WASIp2, synchronous) is `wit/inventory.wit`
//! (WASIp3, the source) with `async func` written `func`, and nothing else
//! differs (wit/README.md).

use shop_tests::workspace_root;

#[test]
fn the_synchronous_inventory_wit_is_the_source_without_async() {
    let read = |path: &str| std::fs::read_to_string(workspace_root().join(path)).unwrap();
    let source = read("wit/inventory.wit");
    assert!(source.contains("async func"), "the source declares async functions");
    let expected = source.replace("async func", "func");
    let p2 = read("wit/p2/inventory.wit");
    let first_difference = expected.lines().zip(p2.lines()).position(|(a, b)| a != b);
    assert!(
        expected == p2,
        "wit/p2/inventory.wit differs from wit/inventory.wit other than by `async` (first differing line: {:?}); regenerate it: sed 's/async func/func/g' wit/inventory.wit > wit/p2/inventory.wit",
        first_difference.map(|i| i + 1)
    );
}
