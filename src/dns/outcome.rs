//! What a lookup came to, as the checks see it: found, a definite "no", or one of the ways of
//! not knowing.

/// What one lookup came to. Only [`Outcome::NotFound`] is an authoritative "no": a DNSBL
/// check must treat it as "not listed" and everything else as "unknown".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<T> {
    /// The name has records of the asked type.
    Found(T),
    /// NXDOMAIN, or the name exists without records of this type (NODATA).
    NotFound,
    /// No answer in time: `dns.timeout`, or a stage deadline.
    Timeout,
    /// The server answered SERVFAIL.
    ServFail,
    /// The resolver is marked down (too many consecutive timeouts); nothing was asked.
    Unavailable,
    /// Anything else (a refused or unreachable server, REFUSED, malformed name or answer);
    /// the text is for logs.
    Error(String),
}

impl<T> Outcome<T> {
    /// The bounded metrics label: `ok`, `nxdomain`, `timeout`, `servfail`, `unavailable` or
    /// `error`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Found(_) => "ok",
            Outcome::NotFound => "nxdomain",
            Outcome::Timeout => "timeout",
            Outcome::ServFail => "servfail",
            Outcome::Unavailable => "unavailable",
            Outcome::Error(_) => "error",
        }
    }

    /// The records, if any were found.
    pub fn found(self) -> Option<T> {
        match self {
            Outcome::Found(v) => Some(v),
            _ => None,
        }
    }

    /// True when the lookup could not be answered (timeout, SERVFAIL, unavailable, error):
    /// the caller knows nothing, which is different from a definite [`Outcome::NotFound`].
    pub fn is_failure(&self) -> bool {
        !matches!(self, Outcome::Found(_) | Outcome::NotFound)
    }

    /// Transforms the found value, keeping every other outcome.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::Found(v) => Outcome::Found(f(v)),
            Outcome::NotFound => Outcome::NotFound,
            Outcome::Timeout => Outcome::Timeout,
            Outcome::ServFail => Outcome::ServFail,
            Outcome::Unavailable => Outcome::Unavailable,
            Outcome::Error(e) => Outcome::Error(e),
        }
    }
}

/// One MX record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mx {
    /// Lower is preferred.
    pub preference: u16,
    /// The exchange host, without the trailing dot (`.` itself for a null MX, RFC 7505).
    pub exchange: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_documented_ones() {
        assert_eq!(Outcome::Found(()).label(), "ok");
        assert_eq!(Outcome::<()>::NotFound.label(), "nxdomain");
        assert_eq!(Outcome::<()>::Timeout.label(), "timeout");
        assert_eq!(Outcome::<()>::ServFail.label(), "servfail");
        assert_eq!(Outcome::<()>::Unavailable.label(), "unavailable");
        assert_eq!(Outcome::<()>::Error("x".into()).label(), "error");
    }

    #[test]
    fn failures_are_not_answers() {
        assert!(!Outcome::<()>::NotFound.is_failure());
        assert!(!Outcome::Found(1).is_failure());
        assert!(Outcome::<()>::Timeout.is_failure());
        assert!(Outcome::<()>::ServFail.is_failure());
        assert!(Outcome::<()>::Unavailable.is_failure());
        assert_eq!(Outcome::Found(2).map(|v| v * 2), Outcome::Found(4));
        assert_eq!(
            Outcome::<i32>::Unavailable.map(|v| v * 2),
            Outcome::Unavailable
        );
    }
}
