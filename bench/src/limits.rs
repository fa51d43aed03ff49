//! The load generator's file-descriptor limit.
//!
//! Every connection is a file descriptor, and the default soft limit (often
//! 1024) is far below what `conns` opens, so the soft limit is raised to
//! the hard limit at start; the hard limit is what a process may hold.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Raises the soft `RLIMIT_NOFILE` to the hard limit.
///
/// Returns the limit now in force (`u64::MAX` when unlimited).
///
/// # Errors
///
/// The kernel refused the new limit.
pub fn raise_nofile() -> std::io::Result<u64> {
    let current = getrlimit(Resource::Nofile);
    let target = Rlimit {
        current: current.maximum,
        maximum: current.maximum,
    };
    if current.current != current.maximum {
        setrlimit(Resource::Nofile, target)?;
    }
    Ok(current.maximum.unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn raising_is_idempotent() {
        let first = super::raise_nofile().unwrap();
        assert_eq!(super::raise_nofile().unwrap(), first);
        assert!(first >= 64);
    }
}
