//! Opens artifact stores and reads data files at a [`Location`]: a local path or `s3://`.
//!
//! The layout rules live in `model::store`; this crate only picks the backend.
//! S3 support arrives with its own issue; until then an `s3://` location is refused
//! with a clear error.

use model::StoreError;
use model::store::{LocalStore, Location, ObjectStore};

/// Open the store rooted at `root`.
pub fn open_store(root: &Location) -> Result<Box<dyn ObjectStore>, StoreError> {
    match root {
        Location::Local(p) => Ok(Box::new(LocalStore::new(p.clone()))),
        Location::S3 { .. } => Err(StoreError::Backend(format!(
            "{root}: S3 stores are not supported by this build yet"
        ))),
    }
}

/// Read a whole file (e.g. training data) at `loc`.
pub fn read_location(loc: &Location) -> Result<Vec<u8>, StoreError> {
    match loc {
        Location::Local(p) => std::fs::read(p).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                StoreError::NotFound(p.display().to_string())
            } else {
                StoreError::Io {
                    op: "read",
                    path: p.display().to_string(),
                    source,
                }
            }
        }),
        Location::S3 { .. } => Err(StoreError::Backend(format!(
            "{loc}: reading from S3 is not supported by this build yet"
        ))),
    }
}
