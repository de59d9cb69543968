//! Every guest program under tests/guests is used by some test.

#[test]
fn every_guest_is_used() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut sources = String::new();
    for dir in [root.join("host/tests"), root.join("tests/tests"), root.join("bench")] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "rs" || e == "sh") && path.file_name().unwrap() != "guests_used.rs" {
                sources.push_str(&std::fs::read_to_string(path).unwrap());
            }
        }
    }
    sources.push_str(&std::fs::read_to_string(root.join("host/tests/common/mod.rs")).unwrap());
    let mut unused = Vec::new();
    for entry in std::fs::read_dir(root.join("tests/guests")).unwrap().flatten() {
        let name = format!("guest-{}", entry.file_name().to_string_lossy());
        if !sources.contains(&format!("\"{name}\"")) {
            unused.push(name);
        }
    }
    assert!(unused.is_empty(), "guest programs no test uses: {unused:?}");
}
