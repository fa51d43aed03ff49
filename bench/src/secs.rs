//! [`Secs`]: a duration as the command line takes it (`--hold 0.5`) and
//! the reports show it (a number of seconds), checked once where it is
//! parsed.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A finite, non-negative number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Secs(f64);

/// A number that is not a duration.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("{0} is not a duration: give a non-negative number of seconds")]
pub struct NotADuration(f64);

/// Text that is not a number of seconds.
#[derive(Debug, thiserror::Error)]
pub enum SecsError {
    /// Not a number at all.
    #[error("not a number of seconds")]
    Parse(#[source] std::num::ParseFloatError),
    /// A number, but negative, infinite or NaN.
    #[error(transparent)]
    Range(#[from] NotADuration),
}

impl Secs {
    /// `secs` seconds, if that is a duration.
    ///
    /// # Errors
    ///
    /// `secs` is negative, infinite or NaN.
    pub fn new(secs: f64) -> Result<Self, NotADuration> {
        if secs.is_finite() && secs >= 0.0 {
            Ok(Self(secs))
        } else {
            Err(NotADuration(secs))
        }
    }

    /// The duration.
    pub fn get(self) -> Duration {
        // Checked at construction: finite and not negative. Values beyond
        // `Duration::MAX` (some 10^19 s) saturate.
        Duration::try_from_secs_f64(self.0).unwrap_or(Duration::MAX)
    }

    /// The number of seconds.
    pub fn as_f64(self) -> f64 {
        self.0
    }
}

impl From<Duration> for Secs {
    fn from(duration: Duration) -> Self {
        Self(duration.as_secs_f64())
    }
}

impl TryFrom<f64> for Secs {
    type Error = NotADuration;

    fn try_from(secs: f64) -> Result<Self, Self::Error> {
        Self::new(secs)
    }
}

impl From<Secs> for f64 {
    fn from(secs: Secs) -> Self {
        secs.0
    }
}

impl FromStr for Secs {
    type Err = SecsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(text.trim().parse().map_err(SecsError::Parse)?)?)
    }
}

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_durations_and_refuses_the_rest() {
        assert_eq!(
            "1.5".parse::<Secs>().unwrap().get(),
            Duration::from_millis(1500)
        );
        assert_eq!("0".parse::<Secs>().unwrap().get(), Duration::ZERO);
        for bad in ["-1", "inf", "NaN", "soon", ""] {
            assert!(bad.parse::<Secs>().is_err(), "{bad}");
        }
        let json: Secs = serde_json::from_str("0.25").unwrap();
        assert_eq!(serde_json::to_string(&json).unwrap(), "0.25");
        assert!(serde_json::from_str::<Secs>("-3").is_err());
    }
}
