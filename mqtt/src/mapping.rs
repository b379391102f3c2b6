//! A topic rule: a filter and the topic a match goes to, with the
//! filter's wildcards carried over in order (`zigbee2mqtt/+/x` ->
//! `home/+/x/state`: `zigbee2mqtt/kitchen/x` -> `home/kitchen/x/state`).

use iglu_bus::topic::{matches, validate_filter, TopicError};

/// One rule, checked.
#[derive(Debug, Clone)]
pub struct TopicMap {
    filter: String,
    target: String,
    /// Whether `target` has wildcards to fill; without, every match goes
    /// to `target` itself.
    fills: bool,
}

impl TopicMap {
    /// Checks a rule: `from` is a filter; `to` has the same `+` levels and
    /// the same trailing `#` as `from`, or no wildcard at all.
    pub fn new(from: &str, to: &str) -> Result<TopicMap, TopicError> {
        validate_filter(from).map_err(|e| format!("from: {e}"))?;
        validate_filter(to).map_err(|e| format!("to: {e}"))?;
        let shape = |f: &str| {
            let plus = f.split('/').filter(|l| *l == "+").count();
            (plus, f.ends_with('#'))
        };
        let fills = shape(to) != (0, false);
        if fills && shape(from) != shape(to) {
            return Err(format!(
                "to {to:?} must have the wildcards of from {from:?} ({} '+', {}), or none",
                shape(from).0,
                if shape(from).1 {
                    "a last '#'"
                } else {
                    "no '#'"
                }
            ));
        }
        Ok(TopicMap {
            filter: from.to_owned(),
            target: to.to_owned(),
            fills,
        })
    }

    /// The filter, to subscribe with.
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// Where `topic` goes, if it matches.
    pub fn apply(&self, topic: &str) -> Option<String> {
        if !matches(&self.filter, topic) {
            return None;
        }
        if !self.fills {
            return Some(self.target.clone());
        }
        let levels: Vec<&str> = topic.split('/').collect();
        let mut captured_plus = Vec::new();
        let mut rest: &[&str] = &[];
        for (i, f) in self.filter.split('/').enumerate() {
            match f {
                "+" => captured_plus.push(levels[i]),
                "#" => {
                    rest = levels.get(i..).unwrap_or(&[]);
                    break;
                }
                _ => {}
            }
        }
        let mut plus = captured_plus.into_iter();
        let mut out: Vec<&str> = Vec::new();
        for t in self.target.split('/') {
            match t {
                "+" => out.push(plus.next()?),
                "#" => out.extend_from_slice(rest),
                level => out.push(level),
            }
        }
        // `a/#` matches `a` itself: `x/#` then goes to `x`.
        Some(out.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_carry_over() {
        let m = TopicMap::new("zigbee2mqtt/+", "home/+/state").expect("valid");
        assert_eq!(
            m.apply("zigbee2mqtt/lamp").as_deref(),
            Some("home/lamp/state")
        );
        assert_eq!(m.apply("zigbee2mqtt/lamp/set"), None);
        let m = TopicMap::new("sensors/+/+/#", "home/+/+/raw/#").expect("valid");
        assert_eq!(
            m.apply("sensors/a/b/c/d").as_deref(),
            Some("home/a/b/raw/c/d")
        );
        assert_eq!(m.apply("sensors/a/b").as_deref(), Some("home/a/b/raw"));
        let fixed = TopicMap::new("weather/#", "home/outside/weather").expect("valid");
        assert_eq!(
            fixed.apply("weather/now/temp").as_deref(),
            Some("home/outside/weather")
        );
    }

    #[test]
    fn mismatched_wildcards_are_refused() {
        assert!(TopicMap::new("a/+", "b/#").is_err());
        assert!(TopicMap::new("a/+/+", "b/+").is_err());
        assert!(TopicMap::new("a/#", "b/+").is_err());
        assert!(TopicMap::new("a//b", "c").is_err());
    }
}
