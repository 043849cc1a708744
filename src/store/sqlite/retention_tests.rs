//! Tests of what retention needs from the SQLite file itself. The behaviour of
//! `prune_finished` and filtered listings is the store's contract (`store/contract/`).

use super::tests::store_in_temp_dir;

#[tokio::test]
async fn a_new_file_is_in_incremental_auto_vacuum() {
    let (_dir, path, _store) = store_in_temp_dir();
    let mode: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA auto_vacuum", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, 2);
}
