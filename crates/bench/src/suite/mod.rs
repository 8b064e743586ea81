//! The benchmarks, one module each, in the numbering.

pub mod burst;
pub mod idle;
pub mod latency;
pub mod recovery;
pub mod relay_load;
pub mod start;

use std::process::Command;
use std::time::Duration;

use crate::child::Spawned;
use crate::Env;

/// A tray host (trayer, a plain XEmbed tray) while the tray app runs, as on a desktop; none
/// when trayer is not installed.
pub async fn tray_host(env: &Env) -> Option<Spawned> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("trayer").is_file()))
        .unwrap_or(false);
    if !found {
        return None;
    }
    let mut cmd = Command::new("trayer");
    cmd.args(["--edge", "bottom", "--align", "right", "--widthtype", "pixel", "--width", "120"]).args([
        "--heighttype",
        "pixel",
        "--height",
        "32",
        "--SetDockType",
        "true",
    ]);
    let p = Spawned::spawn(&mut cmd, "trayer", Some(&env.work.join("trayer.log"))).ok()?;
    // Give it a moment to take the tray selection.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Some(p)
}
