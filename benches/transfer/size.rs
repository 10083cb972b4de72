//! Size: the minimal programs built with the `minimal` profile.

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::report::Table;
use crate::MIB;

/// Builds examples with the `minimal` profile (`extra`: which, and features); returns
/// (name, bytes).
pub fn build_minimal(extra: &[&str]) -> Result<Vec<(String, u64)>, String> {
    Ok(build_minimal_in("minimal", extra)?
        .into_iter()
        .map(|(n, len, _)| (n, len))
        .collect())
}

/// Builds examples with `profile`; returns (name, bytes, executable).
pub fn build_minimal_in(
    profile: &str,
    extra: &[&str],
) -> Result<Vec<(String, u64, std::path::PathBuf)>, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut child = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "build",
            "--profile",
            profile,
            "--message-format=json-render-diagnostics",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let stdout = child.stdout.take().ok_or("no cargo stdout")?;
    let mut found = Vec::new();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["reason"] != "compiler-artifact" {
            continue;
        }
        if let (Some(name), Some(exe)) = (v["target"]["name"].as_str(), v["executable"].as_str()) {
            let len = fs::metadata(exe).map_err(|e| format!("{exe}: {e}"))?.len();
            found.push((name.to_string(), len, exe.into()));
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("cargo build --profile {profile} failed: {status}"));
    }
    Ok(found)
}

/// 5: size, unless `BGXFER_BENCH_SIZE=0`.
pub fn size_rows(table: &mut Table) {
    if std::env::var("BGXFER_BENCH_SIZE").as_deref() == Ok("0") {
        table.row(
            "minimal program, stripped",
            "not built".into(),
            "≤ 2 MiB",
            "skipped",
        );
    } else {
        eprintln!("size: cargo build --profile minimal --example minimal --example minimal_ureq");
        match build_minimal(&["--example", "minimal", "--example", "minimal_ureq"]) {
            Ok(found) => {
                let get = |n: &str| found.iter().find(|(name, _)| name == n).map(|x| x.1);
                match get("minimal") {
                    Some(b) => table.max(
                        "minimal program using the crate, stripped (z, LTO)",
                        b as f64,
                        format!("{:.2} MiB", b as f64 / MIB as f64),
                        2.0 * MIB as f64,
                        "≤ 2 MiB",
                    ),
                    None => table.row(
                        "minimal program, stripped",
                        "not found".into(),
                        "≤ 2 MiB",
                        "n/a",
                    ),
                }
                if let Some(b) = get("minimal_ureq") {
                    table.info(
                        "minimal bare ureq PUT program, stripped (anchor)",
                        format!("{:.2} MiB", b as f64 / MIB as f64),
                    );
                }
            }
            Err(e) => table.row("minimal program, stripped", e, "≤ 2 MiB", "n/a"),
        }
        eprintln!("size: cargo build --profile minimal --features s3 --example minimal_s3");
        match build_minimal(&["--features", "s3", "--example", "minimal_s3"]) {
            Ok(found) => {
                if let Some((_, b)) = found.iter().find(|(n, _)| n == "minimal_s3") {
                    table.info(
                        "minimal S3 upload program (`s3` feature), stripped",
                        format!("{:.2} MiB", *b as f64 / MIB as f64),
                    );
                }
            }
            Err(e) => table.row("minimal S3 program, stripped", e, "(info)", "n/a"),
        }
    }
}
