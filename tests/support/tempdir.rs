//! A directory of a test's own, removed at the end.

use std::path::PathBuf;

/// A temporary directory for one test (`.0` is its path).
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    /// A fresh, empty directory named after `test` and this process.
    pub(crate) fn new(test: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("microagent-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("a temporary directory");
        TempDir(path)
    }

    /// Writes `name` with `text`; its path.
    pub(crate) fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("the file is written");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
