//! How long the relay takes to read a users file of many users (what `serve` and SIGHUP
//! do): `cargo run --release -p talkbell-relay --example users_load [USERS] [FILE]`
//! (100,000 users by default). It writes the file with the library (to FILE, kept, or
//! into a temporary folder), then loads it five times and prints each load's time.

use std::path::PathBuf;
use std::time::Instant;

use talkbell_relay::Users;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(100_000);
    let dir = tempfile::tempdir()?;
    let path = std::env::args().nth(2).map_or_else(|| dir.path().join("users.toml"), PathBuf::from);
    let made = Instant::now();
    let mut users = Users::new();
    for id in 1..=n {
        users.add(id, format!("user{id}"));
    }
    users.save(&path)?;
    let bytes = std::fs::metadata(&path)?.len();
    println!("made {n} users ({bytes} bytes) in {} ms", made.elapsed().as_millis());
    for _ in 0..5 {
        let started = Instant::now();
        let loaded = Users::load(&path)?;
        println!("loaded {} users in {:.1} ms", loaded.len(), started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(())
}
