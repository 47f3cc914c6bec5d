//! The target named by the environment: `DATABASE_URL`, and libpq's own variables, password
//! file and service file, for users who already set them up for psql.

use crate::pg::target::libpq::Inputs;

/// The environment as it bears on the target.
#[derive(Debug, Default)]
pub struct EnvTarget {
    database_url: Option<String>,
    libpq: Inputs,
}

impl EnvTarget {
    pub fn from_process() -> Self {
        EnvTarget {
            database_url: std::env::var("DATABASE_URL").ok().filter(|v| !v.is_empty()),
            libpq: Inputs::from_process(None),
        }
    }

    /// What libpq resolves the target from: the connection string given (with where it came
    /// from), else `DATABASE_URL`, and the environment either way.
    pub(super) fn inputs(&self, given: Option<(String, &str)>) -> Inputs {
        let dsn = given.map(|(dsn, from)| (dsn, from.to_owned())).or_else(|| {
            let url = self.database_url.clone()?;
            Some((url, "DATABASE_URL".to_owned()))
        });
        Inputs {
            dsn,
            ..self.libpq.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_dsn_comes_before_database_url() {
        let env = EnvTarget {
            database_url: Some("postgres://a@127.0.0.1/db".into()),
            ..Default::default()
        };
        let inputs = env.inputs(Some(("host=h".into(), "--dsn")));
        assert_eq!(inputs.dsn, Some(("host=h".into(), "--dsn".into())));
        let inputs = env.inputs(None);
        assert_eq!(
            inputs.dsn,
            Some(("postgres://a@127.0.0.1/db".into(), "DATABASE_URL".into()))
        );
        assert!(!EnvTarget::default().inputs(None).names_a_target());
    }
}
