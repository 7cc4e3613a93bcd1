//! Replays every kept input of every fuzz target (`fuzz/corpus/<target>/`) and every
//! crash found so far (`fuzz/regressions/<target>/`): a quick regression run on stable,
//! not a campaign (`fuzz/README.md`).

use std::path::Path;

#[test]
fn every_kept_input_runs_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut replayed = 0;
    for (name, target) in arqon_fuzz::TARGETS {
        for folder in ["corpus", "regressions"] {
            let dir = root.join(folder).join(name);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("a directory entry").path();
                let data = std::fs::read(&path).expect("a readable input");
                let outcome = std::panic::catch_unwind(|| target(&data));
                assert!(outcome.is_ok(), "{name}: {} fails", path.display());
                replayed += 1;
            }
        }
    }
    // The corpora are committed: an empty run would prove nothing.
    assert!(
        replayed >= arqon_fuzz::TARGETS.len(),
        "only {replayed} inputs"
    );
}
