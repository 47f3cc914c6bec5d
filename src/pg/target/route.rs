//! libpq's keywords for choosing among the hosts and for what a login must be
//! (`target_session_attrs`, `connect_timeout` per attempt, `channel_binding`, `keepalives`),
//! read once from the resolved settings and applied to every connection pgstress makes, so
//! the pre-flight, the monitor and the load all reach the node psql would.

use std::time::Duration;

use super::TargetError;
use super::libpq::Resolved;
use crate::pg::wire::{ChannelBinding, ConnectParams, SessionAttrs};

/// What libpq's keywords ask of every connection beyond its address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Route {
    pub attrs: SessionAttrs,
    /// `connect_timeout`, when given: each address's attempt bound.
    pub attempt_timeout: Option<Duration>,
    pub channel_binding: ChannelBinding,
    /// `keepalives` / `keepalives_idle`, when given (None: not asked).
    pub keepalives: Option<Option<Duration>>,
}

impl Route {
    pub fn from_resolved(resolved: &Resolved) -> Result<Self, TargetError> {
        let bad = |reason: String| TargetError::BadDsn { reason };
        let attrs = match resolved.get("target_session_attrs") {
            None => SessionAttrs::Any,
            Some(text) => SessionAttrs::parse(text).ok_or_else(|| {
                bad(format!(
                    "target_session_attrs \"{text}\" is not one of {}",
                    SessionAttrs::NAMES.join(", ")
                ))
            })?,
        };
        let channel_binding = match resolved.get("channel_binding").map(str::trim) {
            None | Some("prefer") => ChannelBinding::Prefer,
            Some("disable") => ChannelBinding::Disable,
            Some("require") => ChannelBinding::Require,
            Some(other) => {
                return Err(bad(format!(
                    "channel_binding \"{other}\" is not one of disable, prefer, require"
                )));
            }
        };
        let seconds = |key: &str| -> Result<Option<u64>, TargetError> {
            resolved
                .get(key)
                .map(|text| {
                    text.trim().parse::<u64>().map_err(|_| {
                        bad(format!("{key} \"{text}\" is not a whole number of seconds"))
                    })
                })
                .transpose()
        };
        let idle = seconds("keepalives_idle")?.map(Duration::from_secs);
        let keepalives = match seconds("keepalives")? {
            Some(0) => None,
            Some(_) => Some(idle),
            None => idle.map(Some),
        };
        // libpq: 0 or less waits forever (pgstress keeps its own deadline); 1 is taken as 2.
        let attempt_timeout = seconds("connect_timeout")
            .ok()
            .flatten()
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(s.max(2)));
        Ok(Route {
            attrs,
            attempt_timeout,
            channel_binding,
            keepalives,
        })
    }

    /// The lean client's settings for `params`' hosts, as this route asks.
    pub fn apply(&self, mut params: ConnectParams) -> ConnectParams {
        params.hosts.attrs = self.attrs;
        params.hosts.attempt_timeout = self.attempt_timeout;
        params.channel_binding = self.channel_binding;
        params.keepalives = self.keepalives;
        params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(dsn: &str) -> Result<Route, TargetError> {
        let inputs = crate::pg::target::libpq::Inputs {
            dsn: Some((dsn.to_owned(), "the DSN".to_owned())),
            ..Default::default()
        };
        Route::from_resolved(&crate::pg::target::libpq::resolve(&inputs).unwrap())
    }

    #[test]
    fn each_keyword_is_read_as_libpq_reads_it() {
        let all = route(
            "host=a,b target_session_attrs=prefer-standby channel_binding=require \
             keepalives_idle=30 connect_timeout=1",
        )
        .unwrap();
        assert_eq!(all.attrs, SessionAttrs::PreferStandby);
        assert_eq!(all.channel_binding, ChannelBinding::Require);
        assert_eq!(all.keepalives, Some(Some(Duration::from_secs(30))));
        assert_eq!(all.attempt_timeout, Some(Duration::from_secs(2)));
        assert_eq!(route("host=a").unwrap(), Route::default());
        assert_eq!(
            route("host=a keepalives=0 keepalives_idle=9")
                .unwrap()
                .keepalives,
            None
        );
        assert_eq!(route("host=a keepalives=1").unwrap().keepalives, Some(None));
        let bad = route("host=a target_session_attrs=master")
            .unwrap_err()
            .to_string();
        assert!(
            bad.contains("\"master\"") && bad.contains("prefer-standby"),
            "{bad}"
        );
        assert!(route("host=a channel_binding=always").is_err());
    }
}
