//! `adpipe plugin build`: build a plugin crate for `wasm32-wasip2` in release
//! with the author's own cargo, find the component from cargo's messages (so
//! `CARGO_TARGET_DIR`, a workspace's target dir or `build.target-dir` never
//! matter), and install it where the configuration points, atomically.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The target every plugin is built for.
pub const TARGET: &str = "wasm32-wasip2";

/// Building or installing a component failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("no Cargo.toml at {0}: pass the plugin crate's folder")]
    NoManifest(String),
    #[error("the {TARGET} target is not installed: run `rustup target add {TARGET}`")]
    NoTarget,
    #[error("running cargo: {0}")]
    Spawn(std::io::Error),
    #[error("cargo build failed ({0}); its errors are above")]
    Cargo(std::process::ExitStatus),
    #[error("cargo built no component for {0}: is `crate-type = [\"cdylib\", ...]` under [lib]?")]
    NoComponent(String),
    #[error("installing {path}: {source}")]
    Install {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The manifest of the crate at `path` (its folder or its `Cargo.toml`).
pub fn manifest(path: &Path) -> Result<PathBuf, BuildError> {
    let manifest = if path.is_dir() {
        path.join("Cargo.toml")
    } else {
        path.to_owned()
    };
    if !manifest.is_file() {
        return Err(BuildError::NoManifest(path.display().to_string()));
    }
    std::fs::canonicalize(&manifest).map_err(|_| BuildError::NoManifest(path.display().to_string()))
}

/// Whether the Rust toolchain `cargo` uses has the standard library for
/// [`TARGET`] (`None`: cannot tell, let cargo say).
fn target_installed() -> Option<bool> {
    let output = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()?;
    let dir = String::from_utf8(output.stdout).ok()?;
    Some(output.status.success() && Path::new(dir.trim()).is_dir())
}

/// `cargo build --release --target wasm32-wasip2` of the crate at `manifest`
/// (`--profile NAME` instead of `--release` when `profile` names one; cargo's
/// diagnostics go to stderr as usual); the component it wrote.
pub fn build(manifest: &Path, profile: Option<&str>) -> Result<PathBuf, BuildError> {
    if target_installed() == Some(false) {
        return Err(BuildError::NoTarget);
    }
    let mut child = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .arg("build")
        .args(match profile {
            Some(profile) => vec!["--profile", profile],
            None => vec!["--release"],
        })
        .args(["--target", TARGET])
        .arg("--manifest-path")
        .arg(manifest)
        .args(["--message-format", "json-render-diagnostics"])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(BuildError::Spawn)?;
    let mut component = None;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(path) = component_of(&line, manifest) {
                component = Some(path);
            }
        }
    }
    let status = child.wait().map_err(BuildError::Spawn)?;
    if !status.success() {
        return Err(BuildError::Cargo(status));
    }
    component.ok_or_else(|| BuildError::NoComponent(manifest.display().to_string()))
}

/// The `.wasm` a cargo `compiler-artifact` message names for the package of
/// `manifest`, if the line is one.
fn component_of(line: &str, manifest: &Path) -> Option<PathBuf> {
    let message: serde_json::Value = serde_json::from_str(line).ok()?;
    if message["reason"] != "compiler-artifact"
        || Path::new(message["manifest_path"].as_str()?) != manifest
    {
        return None;
    }
    message["filenames"]
        .as_array()?
        .iter()
        .filter_map(|f| f.as_str())
        .find(|f| f.ends_with(".wasm"))
        .map(PathBuf::from)
}

/// Copy `component` to `destination` through a temporary file beside it and
/// a rename, so a server watching the path never reads half a file. Returns
/// the size in bytes.
pub fn install(component: &Path, destination: &Path) -> Result<u64, BuildError> {
    let failed = |source| BuildError::Install {
        path: destination.display().to_string(),
        source,
    };
    if let Some(parent) = destination.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(failed)?;
    }
    let mut partial = destination.as_os_str().to_owned();
    partial.push(format!(".partial-{}", std::process::id()));
    let partial = PathBuf::from(partial);
    let size = std::fs::copy(component, &partial).map_err(failed)?;
    std::fs::rename(&partial, destination).map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        failed(e)
    })?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_component_is_read_from_cargo_messages_of_the_crate_itself() {
        let manifest = Path::new("/src/acme/Cargo.toml");
        let line = |manifest_path: &str, file: &str| {
            serde_json::json!({
                "reason": "compiler-artifact", "manifest_path": manifest_path,
                "filenames": [file], "target": {"kind": ["cdylib", "rlib"]}
            })
            .to_string()
        };
        assert_eq!(
            component_of(
                &line(
                    "/src/acme/Cargo.toml",
                    "/t/wasm32-wasip2/release/adpipe_plugin_acme.wasm"
                ),
                manifest
            ),
            Some(PathBuf::from(
                "/t/wasm32-wasip2/release/adpipe_plugin_acme.wasm"
            ))
        );
        // A dependency's artifact, or a line that is no artifact: not ours.
        assert_eq!(
            component_of(&line("/reg/serde/Cargo.toml", "/t/x.wasm"), manifest),
            None
        );
        assert_eq!(
            component_of(r#"{"reason":"build-finished"}"#, manifest),
            None
        );
        assert_eq!(component_of("Compiling acme", manifest), None);
    }

    #[test]
    fn install_replaces_the_file_whole_and_leaves_nothing_beside_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (from, to) = (
            dir.path().join("built.wasm"),
            dir.path().join("dist/acme.wasm"),
        );
        std::fs::write(&from, b"new bytes").expect("write");
        assert_eq!(install(&from, &to).expect("install"), 9);
        std::fs::write(&from, b"newer").expect("write");
        assert_eq!(install(&from, &to).expect("install"), 5);
        assert_eq!(std::fs::read(&to).expect("read"), b"newer");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("dist"))
            .expect("dist")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("acme.wasm")]);
    }
}
