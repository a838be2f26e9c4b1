//! The workspace's binaries for tests of another package.
//!
//! Cargo sets `CARGO_BIN_EXE_<name>` only for the integration tests of the package that
//! defines the binary, and a binary-only package cannot be a dependency. So the end-to-end
//! tests (package `stockcast-e2e`) ask for the binary here: it is built with
//! `cargo build -p <package> --bin <name>` into the target directory and profile of the
//! running test (a no-op when `cargo nextest run --workspace` or an earlier test built it),
//! once per test process.
//!
//! `STOCKCAST_TEST_BIN_<NAME>` (e.g. `STOCKCAST_TEST_BIN_STOCKCAST`) names a binary to use
//! instead, without building.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};

/// The `stockcast` command line, built when needed.
pub fn stockcast() -> PathBuf {
    workspace_bin("stockcast", "stockcast")
}

/// Binary `name` of workspace package `package`, built when needed (see the module doc).
pub fn workspace_bin(package: &str, name: &str) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let variable = format!(
        "STOCKCAST_TEST_BIN_{}",
        name.to_ascii_uppercase().replace('-', "_")
    );
    if let Some(path) = std::env::var_os(&variable).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    // Held while building: parallel tests of one process build once.
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(path) = built.get(name) {
        return path.clone();
    }
    let (target_dir, profile_dir) = target_of_this_test();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_owned(),
        Some(other) => other.to_owned(),
        None => panic!("no profile directory in {}", profile_dir.display()),
    };
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    let cargo = std::env::var_os("CARGO")
        .or_else(|| option_env!("CARGO").map(Into::into))
        .unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .arg("build")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["--package", package, "--bin", name, "--profile", &profile])
        .arg("--target-dir")
        .arg(&target_dir)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cargo:?} to build {name}: {e}"));
    assert!(
        status.success(),
        "`cargo build -p {package} --bin {name}` failed ({status}); set {variable} to use a \
         binary built elsewhere"
    );
    let path = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "cargo built {name} but {} is not there",
        path.display()
    );
    built.insert(name.to_owned(), path.clone());
    path
}

/// The target directory and the profile directory (`<target>/debug`) of the running test,
/// whose executable is `<target>/<profile>/deps/<test>-<hash>`.
fn target_of_this_test() -> (PathBuf, PathBuf) {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("no current executable: {e}"));
    let deps = exe
        .parent()
        .filter(|dir| dir.ends_with("deps"))
        .unwrap_or_else(|| panic!("{} is not in a cargo deps directory", exe.display()));
    let profile_dir = deps
        .parent()
        .unwrap_or_else(|| panic!("no profile directory above {}", deps.display()));
    // A cross build (`--target <triple>`) adds a level this does not follow: set the
    // variable of the module doc then.
    let target_dir = profile_dir
        .parent()
        .unwrap_or_else(|| panic!("no target directory above {}", profile_dir.display()))
        .to_path_buf();
    (target_dir, profile_dir.to_path_buf())
}
