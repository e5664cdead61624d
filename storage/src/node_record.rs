//! [`NodeRecord`]: which node of which cluster a data directory belongs to
//! (`<data-dir>/node.json`), read and written here so that nothing above storage touches
//! files. What a mismatch means is the engine's to decide (`eddy_sql`'s `cluster.rs`).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

const FILE: &str = "node.json";

/// A data directory's node id and its cluster's voters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node's id.
    pub node_id: u64,
    /// Every voter's id, the node's included.
    pub voters: BTreeSet<u64>,
}

impl NodeRecord {
    /// The record in `data_dir`, if there is one; an undecodable one is
    /// [`Error::Corrupt`].
    pub fn read(data_dir: &Path) -> Result<Option<NodeRecord>> {
        let path = data_dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Corrupt {
                    path,
                    position: 0,
                    reason: format!("the node record does not decode: {e}"),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Whether `data_dir` already holds a node's data (a catalog or topics), record or not.
    pub fn holds_data(data_dir: &Path) -> bool {
        ["meta", "catalog", "topics"]
            .iter()
            .any(|d| data_dir.join(d).exists())
    }

    /// Writes the record into `data_dir` durably: a temporary file, synced, renamed over
    /// the record, the directory synced.
    pub fn write(&self, data_dir: &Path) -> Result<()> {
        let io = |p: &Path| {
            let context = format!("writing {}", p.display());
            move |e| Error::io(context, e)
        };
        let bytes = serde_json::to_vec(self).map_err(|e| {
            Error::io(
                "encoding the node record",
                std::io::Error::other(e.to_string()),
            )
        })?;
        std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
        let tmp = data_dir.join("node.json.tmp");
        let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(&bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        let path = data_dir.join(FILE);
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        std::fs::File::open(data_dir)
            .and_then(|d| d.sync_all())
            .map_err(io(data_dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written_and_a_damaged_one_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(NodeRecord::read(dir.path()).unwrap(), None);
        assert!(!NodeRecord::holds_data(dir.path()));
        let record = NodeRecord {
            node_id: 2,
            voters: BTreeSet::from([1, 2, 3]),
        };
        record.write(dir.path()).unwrap();
        assert_eq!(NodeRecord::read(dir.path()).unwrap(), Some(record));
        std::fs::write(dir.path().join(FILE), b"{\"node_id\":").unwrap();
        assert!(matches!(
            NodeRecord::read(dir.path()),
            Err(Error::Corrupt { .. })
        ));
    }
}
