//! Error type shared by every module of this crate.

use std::path::PathBuf;

/// Convenience alias for results produced by this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// Everything that can go wrong while loading, preparing or fetching data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An I/O operation on `path` failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("reading", "creating", ...).
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A dataset file does not hold a whole, non-zero number of records.
    #[error(
        "{}: size {size} bytes is not a positive whole number of {record_size}-byte records",
        path.display()
    )]
    BadFileSize {
        /// The offending file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The size of one record in bytes.
        record_size: usize,
    },

    /// A dataset file is larger than this crate is willing to read.
    #[error("{}: size {size} bytes exceeds the limit of {limit} bytes", path.display())]
    FileTooLarge {
        /// The offending file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The maximum accepted size.
        limit: u64,
    },

    /// A record carries a label outside `0..classes`.
    #[error("{}: record {record} has label {label}, but there are only {classes} classes", path.display())]
    BadLabel {
        /// The offending file.
        path: PathBuf,
        /// Zero-based index of the record inside the file.
        record: usize,
        /// The label found.
        label: u32,
        /// Number of classes of the dataset.
        classes: usize,
    },

    /// An IDX file (MNIST, Fashion-MNIST) is malformed: its header, its size or its gzip
    /// stream.
    #[error("{}: {detail}", path.display())]
    BadIdx {
        /// The offending file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },

    /// Expected dataset files are missing from a directory (details boxed to
    /// keep the error type small).
    #[error("{0}")]
    MissingFiles(Box<MissingFiles>),

    /// A dataset, configuration or parameter is inconsistent.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// What was invalid ("dataset", "normalizer", "batch config", ...).
        what: &'static str,
        /// Human-readable explanation.
        detail: String,
    },

    /// The validation split would leave no training data.
    #[error("val_size {val_size} must be smaller than the training set size {train_size}")]
    ValTooLarge {
        /// Requested validation size.
        val_size: usize,
        /// Number of training records available.
        train_size: usize,
    },

    /// The MD5 digest of an archive does not match the expected one.
    #[error("MD5 mismatch for {}: expected {expected}, got {actual}", path.display())]
    Md5Mismatch {
        /// The archive checked.
        path: PathBuf,
        /// Expected digest (lower-case hex).
        expected: String,
        /// Actual digest (lower-case hex).
        actual: String,
    },

    /// An archive could not be unpacked.
    #[error("cannot unpack archive {}: {detail}", path.display())]
    Archive {
        /// The archive.
        path: PathBuf,
        /// Explanation.
        detail: String,
    },

    /// A folder dataset the user named is missing or not laid out as
    /// `root/train/<class>/<image>` (a user error).
    #[error("{}: {message}", path.display())]
    Folder {
        /// The folder (or file) involved.
        path: PathBuf,
        /// What is wrong and what would be valid.
        message: String,
    },

    /// Images of a folder dataset cannot be decoded and `data.bad_images` is `error` (a user
    /// error: the user's files).
    #[error(
        "{}: {message}{}; fix or remove the file, or set `data.bad_images: skip` to leave          undecodable images out",
        path.display(),
        more_bad(*others)
    )]
    BadImage {
        /// The first file that could not be decoded.
        path: PathBuf,
        /// Why.
        message: String,
        /// How many other files could not be decoded either.
        others: usize,
    },

    /// An HTTP download failed.
    #[error("download of {url} failed: {detail}")]
    Download {
        /// The URL requested.
        url: String,
        /// Explanation.
        detail: String,
    },
}

/// Details of [`DataError::MissingFiles`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingFiles {
    /// Dataset name (`cifar10`, `cifar100`, `fashion_mnist`, `mnist`).
    pub kind: &'static str,
    /// The directory that was searched.
    pub dir: PathBuf,
    /// The files that were expected in it.
    pub expected: Vec<String>,
    /// The files that are missing.
    pub missing: Vec<String>,
    /// The directory to pass to `wrnc data fetch --dir`.
    pub fetch_dir: PathBuf,
    /// The folder name the official archive unpacks to.
    pub archive_dir: &'static str,
    /// The system package that installs the dataset, when there is one.
    pub package: Option<&'static str>,
}

impl std::fmt::Display for MissingFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.missing.len() == self.expected.len() {
            write!(
                f,
                "dataset directory {} has none of the {} files ({})",
                self.dir.display(),
                self.kind,
                self.expected.join(", "),
            )?;
        } else {
            write!(
                f,
                "dataset directory {} is incomplete: missing {} ({} of the {} files)",
                self.dir.display(),
                self.missing.join(", "),
                self.missing.len(),
                self.expected.len(),
            )?;
        }
        let unpacked = self.fetch_dir.join(self.archive_dir);
        write!(
            f,
            ". Download it with `wrnc data fetch {} --dir {}` (unpacks to {}",
            self.kind,
            self.fetch_dir.display(),
            unpacked.display()
        )?;
        if unpacked != self.dir {
            write!(f, "; then set data.root to that folder")?;
        }
        write!(f, ")")?;
        if let Some(p) = self.package {
            write!(f, ", or install it with `apt-get install {p}`")?;
        }
        Ok(())
    }
}

fn more_bad(others: usize) -> String {
    match others {
        0 => String::new(),
        1 => " (and 1 more file cannot be decoded)".into(),
        n => format!(" (and {n} more files cannot be decoded)"),
    }
}

impl DataError {
    /// Whether the error is about files the user named and can fix (a folder dataset's
    /// layout or images), rather than a failure at run time.
    pub fn is_user_input(&self) -> bool {
        matches!(
            self,
            DataError::Folder { .. } | DataError::BadImage { .. } | DataError::ValTooLarge { .. }
        )
    }

    /// Builds a [`DataError::Folder`].
    pub(crate) fn folder(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        DataError::Folder {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Builds an [`DataError::Io`] from an action, a path and an I/O error.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        DataError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Builds an [`DataError::Invalid`].
    pub(crate) fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        DataError::Invalid {
            what,
            detail: detail.into(),
        }
    }
}
