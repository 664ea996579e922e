//! The data directory belongs to the service's user alone: directories
//! 0700, files 0600. The ledger, its checkpoint and key, the principals and
//! the gateway's state hold who may do what and every fact; nobody else on
//! the machine needs to read them.
//!
//! The stores (sled) create their files with the process umask, so the tree
//! is tightened after they are opened and again after they are closed; the
//! directory itself being 0700 already keeps others out in between.

use std::path::Path;

use crate::error::{Error, Result};

#[cfg(unix)]
const DIR_MODE: u32 = 0o700;
#[cfg(unix)]
const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) private, or makes an existing one so.
pub fn create_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    builder.create(dir).map_err(|e| Error::io(format!("create directory {}", dir.display()), e))?;
    restrict(dir, true)
}

/// Creates (or truncates) a file only its owner may read and write.
pub fn create_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    options.open(path)
}

/// Makes `dir` and everything below it private. Symbolic links are left
/// alone: their target is not ours to change.
pub fn restrict_tree(dir: &Path) -> Result<()> {
    restrict(dir, true)?;
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| Error::io(format!("inspect {}", path.display()), e))?;
        if kind.is_dir() {
            restrict_tree(&path)?;
        } else if kind.is_file() {
            match restrict(&path, false) {
                // sled may remove a file (an old snapshot) while we walk.
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
    }
    Ok(())
}

#[cfg(unix)]
fn restrict(path: &Path, is_dir: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = if is_dir { DIR_MODE } else { FILE_MODE };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("make {} private", path.display()), e))
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _is_dir: bool) -> Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_tree_becomes_the_owners_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        create_dir(&data.join("hj212")).unwrap();
        std::fs::write(data.join("hj212").join("db"), b"x").unwrap();
        std::fs::set_permissions(data.join("hj212").join("db"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        restrict_tree(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("hj212")), 0o700);
        assert_eq!(mode(&data.join("hj212").join("db")), 0o600);
    }
}
