//! How the process listens: `HOST`, `PORT`, `SHUTDOWN_DRAIN_SECS`, `SHUTDOWN_GRACE_SECS`,
//! `REQUEST_TIMEOUT_SECS`, `UPLOAD_TIMEOUT_SECS`, `TRUST_PROXY`, `FORCE_HTTPS`.

use std::net::IpAddr;
use std::time::Duration;

use super::{ConfigError, Vars, parse, positive};

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: IpAddr,
    pub port: u16,
    /// How long after SIGTERM or SIGINT the process goes on accepting requests while
    /// `/readyz` answers 503, so that a load balancer's health checks take it out of rotation
    /// before it stops listening.
    pub shutdown_drain: Duration,
    /// How long in-flight requests may finish once the process stops listening.
    pub shutdown_grace: Duration,
    /// The longest any request other than an upload may take.
    pub request_timeout: Duration,
    /// The longest an avatar or resume upload through the app may take.
    pub upload_timeout: Duration,
    /// Believe `X-Forwarded-Proto` and `X-Forwarded-For` (set by the platform's router).
    pub trust_proxy: bool,
    /// Redirect plain-http requests to https.
    pub force_https: bool,
}

impl ServerConfig {
    pub(super) fn from_vars(vars: &dyn Vars) -> Result<Self, ConfigError> {
        let request_timeout = Duration::from_secs(positive(vars, "REQUEST_TIMEOUT_SECS", 25)?);
        let trust_proxy = parse(vars, "TRUST_PROXY", false)?;
        let force_https = parse(vars, "FORCE_HTTPS", false)?;
        if force_https && !trust_proxy {
            return Err(ConfigError::new(
                "FORCE_HTTPS",
                "needs TRUST_PROXY=true: stowage speaks plain http and learns that a request \
                 came over https from the proxy's X-Forwarded-Proto",
            ));
        }
        Ok(Self {
            host: parse(vars, "HOST", IpAddr::from([127, 0, 0, 1]))?,
            port: parse(vars, "PORT", 8000)?,
            shutdown_drain: Duration::from_secs(parse(vars, "SHUTDOWN_DRAIN_SECS", 0)?),
            shutdown_grace: Duration::from_secs(parse(vars, "SHUTDOWN_GRACE_SECS", 25)?),
            request_timeout,
            upload_timeout: Duration::from_secs(positive(vars, "UPLOAD_TIMEOUT_SECS", 120)?),
            trust_proxy,
            force_https,
        })
    }
}
