//! Startup and authentication: trust, cleartext password, md5, SCRAM-SHA-256 and
//! SCRAM-SHA-256-PLUS, then the server's parameters up to ReadyForQuery.

use fallible_iterator::FallibleIterator;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::message::backend::{AuthenticationSaslBody, Message};
use postgres_protocol::message::frontend;

use super::connect::{ChannelBinding, ConnectParams, Connection};
use super::error::WireError;
use super::reader::server_error;
use super::scram::ScramClient;
use super::stream::Transport;

const AUTH: &str = "authenticating";

impl Connection {
    /// The startup message, authentication, and the wait for ReadyForQuery.
    pub(super) fn startup(&mut self, params: &ConnectParams) -> Result<(), WireError> {
        let mut pairs: Vec<(&str, &str)> =
            vec![("user", &params.user), ("client_encoding", "UTF8")];
        if let Some(database) = &params.database {
            pairs.push(("database", database));
        }
        if let Some(name) = &params.application_name {
            pairs.push(("application_name", name));
        }
        pairs.extend(params.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        frontend::startup_message(pairs, &mut self.out)
            .map_err(|err| WireError::protocol(format!("startup message: {err}")))?;
        self.send("sending the startup message")?;
        self.authenticate(params)?;
        self.wait_ready()
    }

    fn authenticate(&mut self, params: &ConnectParams) -> Result<(), WireError> {
        loop {
            let message = self.reader.next(&mut self.stream, AUTH)?;
            match message {
                Message::AuthenticationOk => return require_binding(params, false, "trust"),
                Message::AuthenticationCleartextPassword => {
                    require_binding(params, false, "a cleartext password")?;
                    let password = password(params)?;
                    self.send_password(password.as_bytes())?;
                }
                Message::AuthenticationMd5Password(body) => {
                    require_binding(params, false, "md5")?;
                    let hashed = md5_hash(
                        params.user.as_bytes(),
                        password(params)?.as_bytes(),
                        body.salt(),
                    );
                    self.send_password(hashed.as_bytes())?;
                }
                Message::AuthenticationSasl(body) => return self.scram(params, &body),
                Message::ErrorResponse(body) => return Err(server_error(body.fields())),
                Message::AuthenticationGss
                | Message::AuthenticationSspi
                | Message::AuthenticationKerberosV5
                | Message::AuthenticationScmCredential
                | Message::AuthenticationGssContinue(_) => {
                    return Err(WireError::Auth(
                        "the server asks for an authentication method pgstress does not speak"
                            .into(),
                    ));
                }
                _ => {
                    return Err(WireError::protocol(
                        "unexpected message during authentication",
                    ));
                }
            }
        }
    }

    fn send_password(&mut self, password: &[u8]) -> Result<(), WireError> {
        frontend::password_message(password, &mut self.out)
            .map_err(|err| WireError::protocol(err.to_string()))?;
        self.send(AUTH)
    }

    /// The SCRAM exchange: SCRAM-SHA-256-PLUS over TLS when the server offers it and the
    /// certificate allows a binding, plain SCRAM-SHA-256 otherwise.
    fn scram(
        &mut self,
        params: &ConnectParams,
        body: &AuthenticationSaslBody,
    ) -> Result<(), WireError> {
        let mechanisms: Vec<&str> = body
            .mechanisms()
            .collect()
            .map_err(|err| WireError::protocol(format!("SASL mechanisms: {err}")))?;
        let offered = mechanisms.contains(&"SCRAM-SHA-256-PLUS");
        let binding = match (offered, params.channel_binding) {
            (true, ChannelBinding::Prefer | ChannelBinding::Require) => self.channel_binding(),
            _ => None,
        };
        require_binding(params, binding.is_some(), "SCRAM without channel binding")?;
        if binding.is_none() && !mechanisms.contains(&"SCRAM-SHA-256") {
            return Err(WireError::Auth(format!(
                "no SASL mechanism pgstress speaks among {mechanisms:?}"
            )));
        }
        self.bound = binding.is_some();
        // Under `disable` the client says it does not bind ("n"), not that the server could
        // not ("y"), which a server offering SCRAM-SHA-256-PLUS would take for a downgrade.
        let may_bind = self.tls && params.channel_binding != ChannelBinding::Disable;
        let mut client = ScramClient::new(
            password(params)?,
            params.scram_per_connection,
            may_bind,
            binding,
        )?;
        frontend::sasl_initial_response(
            client.mechanism(),
            client.client_first().as_bytes(),
            &mut self.out,
        )
        .map_err(|err| WireError::protocol(err.to_string()))?;
        self.send(AUTH)?;
        let server_first = match self.reader.next(&mut self.stream, AUTH)? {
            Message::AuthenticationSaslContinue(body) => body.data().to_vec(),
            Message::ErrorResponse(body) => return Err(server_error(body.fields())),
            _ => return Err(WireError::protocol("expected SASL continue")),
        };
        let last = client.client_final(&server_first)?;
        frontend::sasl_response(last.as_bytes(), &mut self.out)
            .map_err(|err| WireError::protocol(err.to_string()))?;
        self.send(AUTH)?;
        match self.reader.next(&mut self.stream, AUTH)? {
            Message::AuthenticationSaslFinal(body) => client.verify_server_final(body.data())?,
            Message::ErrorResponse(body) => return Err(server_error(body.fields())),
            _ => return Err(WireError::protocol("expected SASL final")),
        }
        match self.reader.next(&mut self.stream, AUTH)? {
            Message::AuthenticationOk => Ok(()),
            Message::ErrorResponse(body) => Err(server_error(body.fields())),
            _ => Err(WireError::protocol("expected authentication ok after SASL")),
        }
    }

    /// tls-server-end-point (RFC 5929): the hash of the server's certificate, with the hash of
    /// its signature algorithm (SHA-256 in place of MD5 and SHA-1). None when there is no
    /// such hash (e.g. Ed25519): then the client does not bind.
    fn channel_binding(&self) -> Option<Vec<u8>> {
        let Transport::Tls(ssl) = &self.stream.transport else {
            return None;
        };
        let cert = ssl.ssl().peer_certificate()?;
        let algorithms = cert
            .signature_algorithm()
            .object()
            .nid()
            .signature_algorithms()?;
        let digest = match algorithms.digest {
            Nid::MD5 | Nid::SHA1 => MessageDigest::sha256(),
            nid => MessageDigest::from_nid(nid)?,
        };
        cert.digest(digest).ok().map(|d| d.to_vec())
    }

    /// Reads the server's parameters and key data up to ReadyForQuery.
    fn wait_ready(&mut self) -> Result<(), WireError> {
        loop {
            match self
                .reader
                .next(&mut self.stream, "waiting for the server to be ready")?
            {
                Message::ReadyForQuery(_) => return Ok(()),
                Message::ParameterStatus(body) => {
                    let on = |value: &str| value == "on";
                    match (body.name(), body.value()) {
                        (Ok("in_hot_standby"), Ok(value)) => self.in_hot_standby = Some(on(value)),
                        (Ok("default_transaction_read_only"), Ok(value)) => {
                            self.default_read_only = Some(on(value))
                        }
                        _ => {}
                    }
                }
                Message::BackendKeyData(_) | Message::NoticeResponse(_) => {}
                Message::ErrorResponse(body) => return Err(server_error(body.fields())),
                _ => {
                    return Err(WireError::protocol(
                        "unexpected message after authentication",
                    ));
                }
            }
        }
    }
}

/// `channel_binding=require` takes no login but SCRAM bound to the TLS channel.
fn require_binding(params: &ConnectParams, bound: bool, method: &str) -> Result<(), WireError> {
    match (params.channel_binding, bound) {
        (ChannelBinding::Require, false) => Err(WireError::Auth(format!(
            "channel_binding=require, but the server authenticated with {method} (SCRAM-SHA-256-PLUS over TLS is required; give channel_binding=prefer to allow it)"
        ))),
        _ => Ok(()),
    }
}

fn password(params: &ConnectParams) -> Result<&str, WireError> {
    params
        .password
        .as_deref()
        .ok_or_else(|| WireError::Auth("the server asks for a password and none was given".into()))
}
