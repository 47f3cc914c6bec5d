//! The demo data set: the original's table `sharding`, rows generated deterministically so that
//! the hex hashes in `data/*.csv` match on every server they are created on.

use std::path::Path;

use anyhow::Context;
use postgres::Client;
use postgres::types::Type;

pub const DEFAULT_ROWS: u64 = crate::model::plan::DEMO_ROWS;
/// Every `SAMPLE_EVERY`-th row goes into the parameter CSVs...
const SAMPLE_EVERY: u64 = 20;
/// ...in files of this many values.
const VALUES_PER_FILE: usize = 1_000;

/// Creates the table and its rows 1..=rows (idempotent: existing rows are kept) and the index.
pub fn seed(client: &mut Client, rows: u64) -> Result<(), postgres::Error> {
    client.batch_execute(
        "CREATE TABLE IF NOT EXISTS sharding (id bigserial PRIMARY KEY, url text NOT NULL, url_hash bytea NOT NULL)",
    )?;
    let rows = i64::try_from(rows).unwrap_or(i64::MAX);
    // Row n is https://example.com/page/n and its hash is the md5 of that URL. Unnamed
    // statements only (`query_typed`): through a transaction-mode pooler a named one outlives
    // this session on the server connection, and another client's of the same name meets it.
    client.query_typed(
        "INSERT INTO sharding (id, url, url_hash)
         SELECT n, 'https://example.com/page/' || n, decode(md5('https://example.com/page/' || n), 'hex')
         FROM generate_series(1, $1::bigint) AS n
         ON CONFLICT (id) DO NOTHING",
        &[(&rows, Type::INT8)],
    )?;
    client.batch_execute(
        "CREATE INDEX IF NOT EXISTS sharding_url_hash_idx ON sharding (url_hash);
         SELECT setval(pg_get_serial_sequence('sharding', 'id'), greatest((SELECT max(id) FROM sharding), 1));
         ANALYZE sharding;",
    )
}

/// Writes the hex hashes of every `SAMPLE_EVERY`-th row into `sharding_<k>.csv` files.
pub fn write_data(client: &mut Client, dir: &Path) -> anyhow::Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let rows = client.query_typed(
        "SELECT encode(url_hash, 'hex') FROM sharding WHERE id % $1 = 0 ORDER BY id",
        &[(&(SAMPLE_EVERY as i64), Type::INT8)],
    )?;
    let values: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    for (index, chunk) in values.chunks(VALUES_PER_FILE).enumerate() {
        let path = dir.join(format!("sharding_{}.csv", index + 1));
        let mut writer = csv::Writer::from_path(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        for value in chunk {
            writer.write_record([value])?;
        }
        writer.flush()?;
    }
    Ok(values.len())
}
