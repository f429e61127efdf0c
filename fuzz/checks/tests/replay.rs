//! Replays the fuzz corpus on stable: every file of `fuzz/corpus/<target>/` goes through the
//! check of that target, the same function the cargo-fuzz target calls. The corpus holds the
//! seeds and every input that ever found a bug, so this is the regression suite of the fuzzers.
//!
//! A second test feeds each check a few hundred inputs from a fixed pseudo-random stream, a
//! cheap smoke test of the checks themselves that needs no fuzzer.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus")
}

/// Runs `check` on `data`; the panic message, if it panicked.
fn run(check: volley_fuzz_checks::Check, data: &[u8]) -> Option<String> {
    let result = catch_unwind(AssertUnwindSafe(|| check(data)));
    result.err().map(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a panic without a message".to_owned())
    })
}

#[test]
fn corpus_replays_clean() {
    let root = corpus_root();
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("no corpus at {}: {e}", root.display()))
        .map(|entry| entry.expect("a readable corpus folder").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut failures = Vec::new();
    let mut seen_targets = Vec::new();
    let mut files = 0usize;
    for dir in dirs {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a UTF-8 folder name")
            .to_owned();
        let check = volley_fuzz_checks::check(&name)
            .unwrap_or_else(|| panic!("corpus folder {name} names no target"));
        seen_targets.push(name);
        let mut entries: Vec<PathBuf> = fs::read_dir(&dir)
            .expect("a readable corpus folder")
            .map(|entry| entry.expect("a readable corpus file").path())
            .filter(|p| p.is_file())
            .collect();
        entries.sort();
        for path in entries {
            let data = fs::read(&path).expect("a readable corpus file");
            files += 1;
            if let Some(message) = run(check, &data) {
                failures.push(format!("{}: {message}", path.display()));
            }
        }
    }
    for (target, _) in volley_fuzz_checks::TARGETS {
        assert!(
            seen_targets.iter().any(|t| t == target),
            "target {target} has no corpus folder"
        );
    }
    assert!(files > 0, "the corpus is empty");
    assert!(
        failures.is_empty(),
        "corpus files fail:\n{}",
        failures.join("\n")
    );
}

#[test]
fn checks_pass_on_pseudo_random_inputs() {
    let mut state = 0x5eed_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut failures = Vec::new();
    for (target, check) in volley_fuzz_checks::TARGETS {
        for case in 0..200 {
            let len = (next() % 512) as usize;
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(message) = run(*check, &data) {
                failures.push(format!("{target} case {case} ({data:02x?}): {message}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
