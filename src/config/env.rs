//! The target named by the environment (DATABASE_URL, PGHOST and friends), for users who
//! already set them for psql.

/// The target named by the environment, the way libpq users expect.
#[derive(Debug, Default)]
pub struct EnvTarget {
    database_url: Option<String>,
    host: Option<String>,
    port: Option<String>,
    user: Option<String>,
    database: Option<String>,
    pub(super) password: Option<String>,
}

impl EnvTarget {
    pub fn from_process() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        EnvTarget {
            database_url: var("DATABASE_URL"),
            host: var("PGHOST"),
            port: var("PGPORT"),
            user: var("PGUSER"),
            database: var("PGDATABASE"),
            password: var("PGPASSWORD"),
        }
    }

    /// DATABASE_URL, else a key=value DSN from the PG* variables when PGHOST is set.
    pub(super) fn dsn(&self) -> Option<String> {
        if let Some(url) = &self.database_url {
            return Some(url.clone());
        }
        let host = self.host.as_ref()?;
        let mut parts = vec![format!("host={}", quote_value(host))];
        let keyed = [
            ("port", &self.port),
            ("user", &self.user),
            ("dbname", &self.database),
        ];
        for (key, value) in keyed {
            if let Some(value) = value {
                parts.push(format!("{key}={}", quote_value(value)));
            }
        }
        Some(parts.join(" "))
    }
}

fn quote_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_variables_build_a_dsn_when_pghost_is_set() {
        let env = EnvTarget {
            host: Some("127.0.0.1".into()),
            port: Some("5433".into()),
            user: Some("bob".into()),
            ..Default::default()
        };
        assert_eq!(
            env.dsn().unwrap(),
            "host='127.0.0.1' port='5433' user='bob'"
        );
        let env = EnvTarget {
            port: Some("5433".into()),
            ..Default::default()
        };
        assert_eq!(env.dsn(), None);
    }

    #[test]
    fn database_url_comes_before_pg_variables() {
        let env = EnvTarget {
            database_url: Some("postgres://a@127.0.0.1/db".into()),
            host: Some("h".into()),
            ..Default::default()
        };
        assert_eq!(env.dsn().unwrap(), "postgres://a@127.0.0.1/db");
    }
}
