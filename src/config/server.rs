//! How the process listens: `HOST`, `PORT`, `SHUTDOWN_DRAIN_SECS`, `SHUTDOWN_GRACE_SECS`,
//! `REQUEST_TIMEOUT_SECS`, `UPLOAD_TIMEOUT_SECS`, `TRUST_PROXY`, `TRUSTED_PROXIES`, `FORCE_HTTPS`,
//! `MAX_CONNECTIONS`, `SITE_URL`.

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
    /// Whose `X-Forwarded-Proto` and `X-Forwarded-For` are believed.
    pub proxies: TrustedProxies,
    /// Redirect plain-http requests to https.
    pub force_https: bool,
    /// The most connections open at once; more wait in the backlog.
    pub max_connections: usize,
    /// The site's public origin (`https://members.example.org`), which absolute URLs (share
    /// links, canonical links) are built on; unset, each request's own origin stands in
    /// (development only: production requires it).
    pub site_url: Option<String>,
}

impl ServerConfig {
    pub(super) fn from_vars(vars: &dyn Vars) -> Result<Self, ConfigError> {
        let request_timeout = Duration::from_secs(positive(vars, "REQUEST_TIMEOUT_SECS", 25)?);
        let proxies = TrustedProxies::from_vars(vars)?;
        let force_https = parse(vars, "FORCE_HTTPS", false)?;
        if force_https && proxies == TrustedProxies::None {
            return Err(ConfigError::new(
                "FORCE_HTTPS",
                "needs TRUSTED_PROXIES (or TRUST_PROXY=true): stowage speaks plain http and \
                 learns that a request came over https from the proxy's X-Forwarded-Proto",
            ));
        }
        Ok(Self {
            host: parse(vars, "HOST", IpAddr::from([127, 0, 0, 1]))?,
            port: parse(vars, "PORT", 8000)?,
            shutdown_drain: Duration::from_secs(parse(vars, "SHUTDOWN_DRAIN_SECS", 0)?),
            shutdown_grace: Duration::from_secs(parse(vars, "SHUTDOWN_GRACE_SECS", 25)?),
            request_timeout,
            upload_timeout: Duration::from_secs(positive(vars, "UPLOAD_TIMEOUT_SECS", 120)?),
            proxies,
            force_https,
            max_connections: usize::try_from(positive(vars, "MAX_CONNECTIONS", 1024)?)
                .map_err(|_| ConfigError::new("MAX_CONNECTIONS", "is too large"))?,
            site_url: vars
                .get("SITE_URL")
                .map(|url| site_origin(&url))
                .transpose()?,
        })
    }
}

/// `SITE_URL` as an origin: `http` or `https`, a host and perhaps a port, and nothing after
/// but one `/`. Returned without the slash, as URLs are built on it.
fn site_origin(value: &str) -> Result<String, ConfigError> {
    let invalid = |why: &str| {
        ConfigError::new(
            "SITE_URL",
            format!("{why}: give the site's public origin, e.g. https://members.example.org"),
        )
    };
    let url = url::Url::parse(value).map_err(|_| invalid("is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid("must be an http or https URL with a host"));
    }
    if url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(invalid("must have no path, query, fragment or user"));
    }
    Ok(url.origin().ascii_serialization())
}

/// Whose forwarded headers (`X-Forwarded-For`, `X-Forwarded-Proto`) are believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustedProxies {
    /// Nobody's (the default): the client is the connection's peer.
    None,
    /// Every peer's (`TRUST_PROXY=true`): only behind a router that strips or overwrites the
    /// headers a client sends (Heroku's does), since then no client reaches the process
    /// directly.
    Any,
    /// Those of peers within these networks (`TRUSTED_PROXIES`); the client is the last
    /// `X-Forwarded-For` hop outside them.
    Within(Vec<ipnet::IpNet>),
}

impl TrustedProxies {
    fn from_vars(vars: &dyn Vars) -> Result<Self, ConfigError> {
        let any = parse(vars, "TRUST_PROXY", false)?;
        let listed = vars.get("TRUSTED_PROXIES").unwrap_or_default();
        let networks = listed
            .split(',')
            .map(str::trim)
            .filter(|net| !net.is_empty())
            .map(|net| {
                // A bare address is a network of one.
                net.parse::<ipnet::IpNet>()
                    .or_else(|_| net.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        ConfigError::new(
                            "TRUSTED_PROXIES",
                            format!("{net:?} is not an address or a network such as 10.0.0.0/8"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(match (any, networks.is_empty()) {
            (true, false) => {
                return Err(ConfigError::new(
                    "TRUSTED_PROXIES",
                    "set it or TRUST_PROXY=true, not both",
                ));
            }
            (true, true) => Self::Any,
            (false, true) => Self::None,
            (false, false) => Self::Within(networks),
        })
    }

    /// Whether `peer`'s forwarded headers are believed.
    pub fn trusts(&self, peer: Option<IpAddr>) -> bool {
        match self {
            Self::None => false,
            Self::Any => true,
            Self::Within(networks) => peer.is_some_and(|peer| is_within(networks, peer)),
        }
    }
}

/// Whether `addr` is in one of `networks` (an IPv4-mapped IPv6 address as its IPv4 one).
pub fn is_within(networks: &[ipnet::IpNet], addr: IpAddr) -> bool {
    let addr = addr.to_canonical();
    networks.iter().any(|net| net.contains(&addr))
}
