//! Rate limits on joining the line, per client address and per user, off unless configured:
//! many buyers share one address behind carrier NAT, so a per-address limit must be chosen for
//! the audience. Limits are per instance (GCRA, `governor`): with N instances behind a balancer,
//! a client may reach up to N times the rate.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use concert_domain::UserId;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Keys remembered beyond which idle ones are forgotten (keeps memory bounded under a flood of
/// addresses).
const MAX_REMEMBERED: usize = 100_000;

/// What limits joining the line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinLimitSettings {
    /// Joins per minute from one client address; `None`: no limit.
    pub per_address_per_minute: Option<NonZeroU32>,
    /// Joins per minute by one user; `None`: no limit.
    pub per_user_per_minute: Option<NonZeroU32>,
    /// Peers whose `X-Forwarded-For` names the client (a load balancer's addresses). From any
    /// other peer the header is ignored: a client could write anything there.
    pub trusted_proxies: Vec<IpAddr>,
}

pub struct JoinLimits {
    per_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_user: Option<DefaultKeyedRateLimiter<UserId>>,
    trusted_proxies: Vec<IpAddr>,
}

impl std::fmt::Debug for JoinLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinLimits")
            .field("per_address", &self.per_address.is_some())
            .field("per_user", &self.per_user.is_some())
            .field("trusted_proxies", &self.trusted_proxies)
            .finish()
    }
}

impl JoinLimits {
    pub fn new(settings: JoinLimitSettings) -> Self {
        Self {
            per_address: settings
                .per_address_per_minute
                .map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            per_user: settings
                .per_user_per_minute
                .map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            trusted_proxies: settings.trusted_proxies,
        }
    }

    /// The client's address: the peer's, or, when the peer is a trusted proxy, the last address
    /// in `X-Forwarded-For` that is not itself a trusted proxy.
    pub fn client_address(
        &self,
        peer: Option<&ConnectInfo<SocketAddr>>,
        headers: &HeaderMap,
    ) -> Option<IpAddr> {
        let peer = peer?.0.ip();
        if !self.trusted_proxies.contains(&peer) {
            return Some(peer);
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|hop| hop.trim().parse().ok())
            .collect();
        Some(
            forwarded
                .into_iter()
                .rev()
                .find(|hop| !self.trusted_proxies.contains(hop))
                .unwrap_or(peer),
        )
    }

    /// `Err(wait)` when `address` joined too often lately.
    pub fn check_address(&self, address: Option<IpAddr>) -> Result<(), Duration> {
        match (&self.per_address, address) {
            (Some(limiter), Some(address)) => check(limiter, &address),
            _ => Ok(()),
        }
    }

    /// `Err(wait)` when `user` joined too often lately.
    pub fn check_user(&self, user: UserId) -> Result<(), Duration> {
        match &self.per_user {
            Some(limiter) => check(limiter, &user),
            None => Ok(()),
        }
    }
}

fn check<K>(limiter: &DefaultKeyedRateLimiter<K>, key: &K) -> Result<(), Duration>
where
    K: Clone + std::hash::Hash + Eq,
{
    if limiter.len() > MAX_REMEMBERED {
        limiter.retain_recent();
    }
    limiter
        .check_key(key)
        .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn limits(proxies: &[&str]) -> JoinLimits {
        JoinLimits::new(JoinLimitSettings {
            per_address_per_minute: NonZeroU32::new(2),
            per_user_per_minute: NonZeroU32::new(1),
            trusted_proxies: proxies.iter().map(|p| p.parse().expect("ip")).collect(),
        })
    }

    fn peer(ip: &str) -> ConnectInfo<SocketAddr> {
        ConnectInfo(SocketAddr::new(ip.parse().expect("ip"), 40_000))
    }

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_str(value).expect("header"),
        );
        headers
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let limits = limits(&["10.0.0.1", "10.0.0.2"]);
        let spoofed = forwarded("203.0.113.9");
        assert_eq!(
            limits.client_address(Some(&peer("198.51.100.7")), &spoofed),
            Some("198.51.100.7".parse().expect("ip")),
            "a direct client cannot pick its address"
        );
        // Through two proxies: the client is the last hop that is not a trusted proxy, whatever
        // the client prepended itself.
        let chain = forwarded("1.2.3.4, 203.0.113.9, 10.0.0.2");
        assert_eq!(
            limits.client_address(Some(&peer("10.0.0.1")), &chain),
            Some("203.0.113.9".parse().expect("ip"))
        );
        assert_eq!(
            limits.client_address(Some(&peer("10.0.0.1")), &HeaderMap::new()),
            Some("10.0.0.1".parse().expect("ip"))
        );
        assert_eq!(limits.client_address(None, &chain), None);
    }

    #[test]
    fn each_address_and_each_user_has_its_own_budget() {
        let limits = limits(&[]);
        let (a, b) = (
            Some("192.0.2.1".parse().expect("ip")),
            Some("192.0.2.2".parse().expect("ip")),
        );
        assert!(limits.check_address(a).is_ok());
        assert!(limits.check_address(a).is_ok());
        let wait = limits
            .check_address(a)
            .expect_err("third join within the minute");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert!(limits.check_address(b).is_ok(), "another address");
        assert!(
            limits.check_address(None).is_ok(),
            "an unknown address is not limited"
        );

        let (one, two) = (
            UserId::from_uuid(uuid::Uuid::from_u128(1)),
            UserId::from_uuid(uuid::Uuid::from_u128(2)),
        );
        assert!(limits.check_user(one).is_ok());
        assert!(limits.check_user(one).is_err());
        assert!(limits.check_user(two).is_ok());
    }

    #[test]
    fn without_settings_nothing_is_limited() {
        let limits = JoinLimits::new(JoinLimitSettings::default());
        let address = Some("192.0.2.1".parse().expect("ip"));
        let user = UserId::from_uuid(uuid::Uuid::from_u128(1));
        for _ in 0..100 {
            assert!(limits.check_address(address).is_ok());
            assert!(limits.check_user(user).is_ok());
        }
    }
}
