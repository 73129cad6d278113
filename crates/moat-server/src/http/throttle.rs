//! Brute-force slowing of console logins, per user and per client address.
//!
//! Each key (a user name, a client IP) counts its failed logins. Once a key
//! has `free` failures, every further failure blocks it for an exponentially
//! growing time (`base`, `2 × base`, `4 × base` ... up to `max`); while
//! blocked, logins for that key are refused with "too many failed attempts,
//! retry in N s" without checking the password. A success clears the
//! user's count (not the address's); counts are forgotten `forget_after` the
//! last failure.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Thresholds and delays.
#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    /// Failures a user may have before being slowed.
    pub free_per_user: u32,
    /// Failures a client address may have before being slowed (it may try
    /// several users).
    pub free_per_address: u32,
    /// First delay.
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
    /// Failures are forgotten this long after the last one.
    pub forget_after: Duration,
}

impl Default for ThrottleConfig {
    /// 3 free failures per user, 10 per address, then 1 s doubling up to 5 min;
    /// forgotten after 15 min.
    fn default() -> Self {
        ThrottleConfig {
            free_per_user: 3,
            free_per_address: 10,
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
            forget_after: Duration::from_secs(900),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Addr(IpAddr),
}

#[derive(Debug)]
struct Entry {
    failures: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

/// Why a login is refused before its password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    /// Too many failures for this user.
    User(Duration),
    /// Too many failures from this address.
    Address(Duration),
}

impl Blocked {
    /// How long until a new attempt is allowed.
    pub fn wait(&self) -> Duration {
        match self {
            Blocked::User(d) | Blocked::Address(d) => *d,
        }
    }

    /// Whole seconds to wait, rounded up (at least 1).
    pub fn wait_secs(&self) -> u64 {
        let d = self.wait();
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }

    /// The message shown to the client.
    pub fn message(&self) -> String {
        let what = match self {
            Blocked::User(_) => "for this user",
            Blocked::Address(_) => "from your address",
        };
        format!("too many failed login attempts {what}; retry in {} s", self.wait_secs())
    }
}

/// The throttle of one console.
pub struct Throttle {
    cfg: ThrottleConfig,
    map: Mutex<HashMap<Key, Entry>>,
}

impl Throttle {
    /// A throttle with these settings.
    pub fn new(cfg: ThrottleConfig) -> Self {
        Throttle {
            cfg,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn blocked(map: &HashMap<Key, Entry>, key: &Key, now: Instant) -> Option<Duration> {
        map.get(key)
            .and_then(|e| e.blocked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    /// Whether a login for `user` from `addr` may be tried now.
    pub fn check(&self, user: &str, addr: IpAddr) -> Result<(), Blocked> {
        let now = Instant::now();
        let map = self.lock();
        if let Some(d) = Self::blocked(&map, &Key::User(user.to_string()), now) {
            return Err(Blocked::User(d));
        }
        if let Some(d) = Self::blocked(&map, &Key::Addr(addr), now) {
            return Err(Blocked::Address(d));
        }
        Ok(())
    }

    fn delay(&self, failures: u32, free: u32) -> Option<Duration> {
        if failures < free {
            return None;
        }
        let exp = (failures - free).min(20);
        Some(self.cfg.base.saturating_mul(1u32 << exp).min(self.cfg.max))
    }

    /// Records a failed login; returns the block it caused, if any.
    pub fn failure(&self, user: &str, addr: IpAddr) -> Option<Blocked> {
        let now = Instant::now();
        let forget = self.cfg.forget_after;
        let mut map = self.lock();
        if map.len() > 10_000 {
            map.retain(|_, e| now.duration_since(e.last) < forget);
        }
        let mut bump = |key: Key, free: u32| -> Option<Duration> {
            let e = map.entry(key).or_insert(Entry {
                failures: 0,
                last: now,
                blocked_until: None,
            });
            if now.duration_since(e.last) >= forget {
                e.failures = 0;
            }
            e.failures = e.failures.saturating_add(1);
            e.last = now;
            let d = self.delay(e.failures, free);
            e.blocked_until = d.map(|d| now + d);
            d
        };
        let by_user = bump(Key::User(user.to_string()), self.cfg.free_per_user);
        let by_addr = bump(Key::Addr(addr), self.cfg.free_per_address);
        match (by_user, by_addr) {
            (Some(u), Some(a)) if a > u => Some(Blocked::Address(a)),
            (Some(u), _) => Some(Blocked::User(u)),
            (None, Some(a)) => Some(Blocked::Address(a)),
            (None, None) => None,
        }
    }

    /// Records a successful login: the user's failures are forgotten.
    pub fn success(&self, user: &str) {
        self.lock().remove(&Key::User(user.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_per_user_and_address() {
        let t = Throttle::new(ThrottleConfig {
            free_per_user: 2,
            free_per_address: 4,
            base: Duration::from_secs(10),
            max: Duration::from_secs(25),
            forget_after: Duration::from_secs(900),
        });
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(t.check("alice", ip).is_ok());
        assert_eq!(t.failure("alice", ip), None);
        assert!(matches!(t.failure("alice", ip), Some(Blocked::User(d)) if d == Duration::from_secs(10)));
        let b = t.check("alice", ip).unwrap_err();
        assert!(b.message().contains("retry in 10 s"), "{}", b.message());
        // Another user from the same address is not blocked yet.
        assert!(t.check("bob", ip).is_ok());
        assert!(matches!(t.failure("alice", ip), Some(Blocked::User(d)) if d == Duration::from_secs(20)));
        // The 4th failure from the address blocks it too.
        assert!(matches!(t.failure("bob", ip), Some(Blocked::Address(d)) if d == Duration::from_secs(10)));
        assert!(matches!(t.check("carol", ip), Err(Blocked::Address(_))));
        assert!(matches!(t.failure("alice", ip), Some(Blocked::User(d)) if d == Duration::from_secs(25)));
        t.success("alice");
        assert!(matches!(t.check("alice", "10.0.0.2".parse().unwrap()), Ok(())));
    }
}
