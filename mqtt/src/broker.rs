//! Where the broker is: `mqtt://host[:port]` or `mqtts://host[:port]`.

/// Where the broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// Host name or address (an IPv6 address without its brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// `mqtts://`.
    pub tls: bool,
}

/// Reads a broker URL: a host (a name, an address, `[v6]`) and a port.
pub(crate) fn parse_url(url: &str) -> Result<Broker, String> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("mqtt://") {
        (false, rest)
    } else if let Some(rest) = url.strip_prefix("mqtts://") {
        (true, rest)
    } else {
        return Err(format!(
            "{url:?} is not mqtt://host[:port] or mqtts://host[:port]"
        ));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('@') {
        return Err("put credentials in username and password_file, not in the url".into());
    }
    if rest.contains(['/', '?', '#']) {
        return Err(format!("{url:?}: only a host and a port, no path"));
    }
    let default_port = if tls { 8883 } else { 1883 };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{url:?}: an IPv6 address needs its closing ']'"))?;
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if after.is_empty() => (host, None),
            None => return Err(format!("{url:?}: unexpected {after:?} after the address")),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{url:?}: port {p:?} is not 1-65535"))?,
        None => default_port,
    };
    Ok(Broker {
        host: host.to_owned(),
        port,
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let b = parse_url("mqtt://127.0.0.1:1884").expect("plain");
        assert_eq!((b.host.as_str(), b.port, b.tls), ("127.0.0.1", 1884, false));
        let b = parse_url("mqtts://broker.local").expect("tls");
        assert_eq!(
            (b.host.as_str(), b.port, b.tls),
            ("broker.local", 8883, true)
        );
        let b = parse_url("mqtt://[::1]").expect("v6");
        assert_eq!((b.host.as_str(), b.port), ("::1", 1883));
        for bad in [
            "tcp://x:1",
            "mqtt://",
            "mqtt://u:p@x",
            "mqtt://x:0",
            "mqtt://x:99999",
            "mqtt://x/topic",
        ] {
            assert!(parse_url(bad).is_err(), "{bad} should be refused");
        }
    }
}
