//! Event topics and subscription filters, with MQTT's rules.
//!
//! Topics are `/`-separated levels (`home/kitchen/motion`). Filters may use
//! `+` for exactly one level and `#`, as the last level, for any number of
//! levels including none (`home/#` matches `home`). As in MQTT, a filter
//! that starts with a wildcard does not match a topic that starts with `$`:
//! the `$iglu/...` tree belongs to the host and is only seen by filters that
//! name it. Unlike MQTT, empty levels (`a//b`) are refused: in a home they
//! are always a typo.

/// Longest topic or filter, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;

/// Why a topic or filter is invalid, as a sentence.
pub type TopicError = String;

fn check_common(s: &str, what: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(format!("{what} is longer than {MAX_TOPIC_LEN} bytes"));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(format!("{what} {s:?} contains a control character"));
    }
    if s.split('/').any(str::is_empty) {
        return Err(format!("{what} {s:?} has an empty level"));
    }
    Ok(())
}

/// Checks a topic to publish on: no wildcards.
pub fn validate_topic(topic: &str) -> Result<(), TopicError> {
    check_common(topic, "topic")?;
    if topic.contains(['+', '#']) {
        return Err(format!(
            "topic {topic:?} contains a wildcard; wildcards belong in subscriptions"
        ));
    }
    Ok(())
}

/// Checks a subscription filter.
pub fn validate_filter(filter: &str) -> Result<(), TopicError> {
    check_common(filter, "filter")?;
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        let wild = level.contains(['+', '#']);
        if wild && level.len() != 1 {
            return Err(format!(
                "filter {filter:?}: a wildcard must fill its whole level"
            ));
        }
        if *level == "#" && i != levels.len() - 1 {
            return Err(format!("filter {filter:?}: '#' must be the last level"));
        }
    }
    Ok(())
}

/// Whether `topic` matches `filter`. Both are assumed valid.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut t = topic.split('/');
    for f in filter.split('/') {
        match f {
            "#" => return true,
            "+" => {
                if t.next().is_none() {
                    return false;
                }
            }
            level => {
                if t.next() != Some(level) {
                    return false;
                }
            }
        }
    }
    t.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_table() {
        let table: &[(&str, &str, bool)] = &[
            ("home/kitchen/motion", "home/kitchen/motion", true),
            ("home/kitchen/motion", "home/kitchen/light", false),
            ("home/+/motion", "home/kitchen/motion", true),
            ("home/+/motion", "home/kitchen/sink/motion", false),
            ("home/+/motion", "home/motion", false),
            ("home/#", "home", true),
            ("home/#", "home/kitchen", true),
            ("home/#", "home/kitchen/light/state", true),
            ("home/#", "garden/kitchen", false),
            ("#", "home/kitchen", true),
            ("#", "x", true),
            ("+", "x", true),
            ("+", "x/y", false),
            ("+/+", "x/y", true),
            ("home/+/#", "home/kitchen", true),
            ("home/+/#", "home", false),
            ("home/kitchen", "home/kitchen/motion", false),
            ("home/kitchen/motion/extra", "home/kitchen/motion", false),
            ("#", "$iglu/plugins/echo/state", false),
            ("+/plugins/+/state", "$iglu/plugins/echo/state", false),
            ("$iglu/#", "$iglu/plugins/echo/state", true),
            ("$iglu/plugins/+/state", "$iglu/plugins/echo/state", true),
            ("Home/#", "home/x", false),
        ];
        for (filter, topic, expected) in table {
            assert!(validate_filter(filter).is_ok(), "{filter}");
            assert!(validate_topic(topic).is_ok(), "{topic}");
            assert_eq!(matches(filter, topic), *expected, "{filter} vs {topic}");
        }
    }

    #[test]
    fn invalid_filters_and_topics() {
        for bad in [
            "",
            "home/#/x",
            "home/ki+/x",
            "home/#x",
            "a//b",
            "/a",
            "a/",
            "a\nb",
        ] {
            assert!(validate_filter(bad).is_err(), "filter {bad:?}");
        }
        for bad in ["", "home/+", "home/#", "a//b", "/", &"x".repeat(300)] {
            assert!(validate_topic(bad).is_err(), "topic {bad:?}");
        }
        assert!(validate_filter("+").is_ok());
        assert!(validate_filter("#").is_ok());
    }
}
