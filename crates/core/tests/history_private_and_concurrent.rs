//! The history's files are private to the user, and its readers never wait on its
//! writer: real SQLite files.

use std::time::{Duration, Instant};

use talkbell_core::history::{History, HistoryQuery};
use talkbell_core::protocol::{Person, Seq, TalkMessage};

const SERVER: &str = "ws://127.0.0.1:9/";

fn talk(seq: u64, text: &str) -> TalkMessage {
    TalkMessage {
        from: Person { id: 2.into(), name: "wang2".into() },
        to: Person { id: 1.into(), name: "wang1".into() },
        talk: text.into(),
        seq: Some(Seq(seq)),
        ts: None,
    }
}

#[cfg(unix)]
mod modes {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    use talkbell_core::config::{Config, Paths};

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn set_mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn companions(db: &Path) -> [PathBuf; 2] {
        [PathBuf::from(format!("{}-wal", db.display())), PathBuf::from(format!("{}-shm", db.display()))]
    }

    #[test]
    fn a_new_history_is_private_folder_database_and_wal() {
        let root = tempfile::tempdir().unwrap();
        let paths = Paths::in_dir(root.path());
        let h = History::open(&paths.history_db).unwrap();
        h.insert(SERVER, &talk(1, "secret")).unwrap();
        assert_eq!(mode(&paths.data_dir), 0o700, "the data folder");
        assert_eq!(mode(&paths.history_db), 0o600, "the database");
        for file in companions(&paths.history_db) {
            assert!(file.exists(), "{} (WAL mode)", file.display());
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
    }

    #[test]
    fn an_existing_history_open_to_others_is_narrowed_at_open() {
        let root = tempfile::tempdir().unwrap();
        let paths = Paths::in_dir(root.path());
        let [wal, shm] = companions(&paths.history_db);
        {
            let h = History::open(&paths.history_db).unwrap();
            h.insert(SERVER, &talk(1, "secret")).unwrap();
            // As an older Talkbell left them (0644 in 0755), the WAL still there.
            set_mode(&paths.data_dir, 0o755);
            for file in [&paths.history_db, &wal, &shm] {
                set_mode(file, 0o644);
            }
            std::mem::forget(h);
        }
        let h = History::open(&paths.history_db).unwrap();
        assert_eq!(mode(&paths.data_dir), 0o700);
        for file in [&paths.history_db, &wal, &shm] {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
        assert_eq!(h.count().unwrap(), 1, "nothing lost");
    }

    #[test]
    fn the_config_folder_is_private_too_new_or_existing() {
        let root = tempfile::tempdir().unwrap();
        let paths = Paths::in_dir(root.path());
        let config_dir = paths.config_file.parent().unwrap().to_path_buf();
        Config::load_or_create(&paths.config_file).unwrap();
        assert_eq!(mode(&config_dir), 0o700);
        assert_eq!(mode(&paths.config_file), 0o600);
        set_mode(&config_dir, 0o755);
        set_mode(&paths.config_file, 0o644);
        Config::load_or_create(&paths.config_file).unwrap();
        assert_eq!(mode(&config_dir), 0o700, "narrowed at start");
        assert_eq!(mode(&paths.config_file), 0o600);
    }
}

#[test]
fn a_reader_gets_its_answer_while_the_writer_holds_a_transaction_open() {
    let dir = tempfile::tempdir().unwrap();
    let h = std::sync::Arc::new(History::open(&dir.path().join("h.sqlite3")).unwrap());
    h.insert(SERVER, &talk(1, "committed")).unwrap();
    let hold = Duration::from_secs(3);
    h.hold_write_for_test(hold).unwrap();
    let held_since = Instant::now();
    // A write sent now waits for the writer; reads do not.
    let writer = {
        let h = h.clone();
        std::thread::spawn(move || {
            h.insert(SERVER, &talk(2, "after the hold")).unwrap();
            Instant::now()
        })
    };
    let list = h.list(&HistoryQuery { limit: 10, ..Default::default() }).unwrap();
    let count = h.count().unwrap();
    let unread = h.unread_count(None).unwrap();
    let read_in = held_since.elapsed();
    assert!(read_in < Duration::from_secs(1), "the reads took {read_in:?} behind a held write");
    assert_eq!(list.iter().map(|e| e.talk.as_str()).collect::<Vec<_>>(), ["committed"], "no uncommitted row");
    assert_eq!((count, unread), (1, 1));
    let written_at = writer.join().unwrap();
    assert!(written_at - held_since >= hold - Duration::from_millis(100), "writes queue behind the writer");
    assert_eq!(h.count().unwrap(), 2);
}
