//! `[mqtt]` as a plugin: the bridge runs as a supervised plugin like any
//! other (a broker client that fails is restarted, not the host), started
//! from the config the host checked here, with exactly the grants its
//! rules need.

use std::path::{Path, PathBuf};

use iglu_mqtt::MqttConfig;

use super::PluginSpec;
use crate::error::ConfigError;
use crate::permissions::Grants;

/// The bridge's executable, beside `iglu`'s.
const BRIDGE_BINARY: &str = "iglu-plugin-mqtt-bridge";

/// Where the bridge finds a password the config took from the host's
/// environment (`password_env`).
pub const PASSWORD_ENV: &str = "IGLU_MQTT_PASSWORD";

/// Variables of the host's environment no plugin inherits: the MQTT
/// password's (the bridge gets its value under [`PASSWORD_ENV`]).
pub fn secret_env(mqtt: Option<&MqttConfig>) -> Vec<String> {
    mqtt.and_then(|m| m.password_env.clone())
        .into_iter()
        .chain([PASSWORD_ENV.to_owned()])
        .collect()
}

/// Checks `[mqtt]`, fills in what the host derives, and returns the
/// bridge's plugin spec.
pub fn bridge_spec(mqtt: &mut MqttConfig) -> Result<PluginSpec, ConfigError> {
    mqtt.resolve(&machine_name())
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let command = mqtt.command.clone().unwrap_or_else(beside_iglu);
    let mut spec = PluginSpec::new(&mqtt.plugin_id, command);
    // A password in the host's environment reaches the bridge alone, under
    // a name of its own: every other plugin's environment is scrubbed of
    // the variable (see `secret_env`).
    let mut handed = mqtt.clone();
    if let Some(var) = &mqtt.password_env {
        let password = std::env::var(var).map_err(|_| {
            ConfigError::Invalid(format!(
                "[mqtt] password_env: the environment variable {var} is not set"
            ))
        })?;
        spec.env.insert(PASSWORD_ENV.to_owned(), password);
        handed.password_env = Some(PASSWORD_ENV.to_owned());
    }
    let json =
        serde_json::to_string(&handed).map_err(|e| ConfigError::Invalid(format!("[mqtt]: {e}")))?;
    spec.env.insert(iglu_mqtt::config::ENV.to_owned(), json);
    spec.permissions = Some(grants(mqtt));
    // It must reach the broker, and read the files it logs in with.
    let files = [
        &mqtt.password_file,
        &mqtt.ca_file,
        &mqtt.client_cert_file,
        &mqtt.client_key_file,
    ];
    spec.sandbox = Some(crate::limits::sandbox::SandboxSpec {
        enabled: None,
        read: files.into_iter().flatten().cloned().collect(),
        write: Vec::new(),
        network: true,
    });
    Ok(spec)
}

/// What the bridge may do: publish where its imports go, subscribe where
/// its exports come from, and use the event bus.
fn grants(mqtt: &MqttConfig) -> Grants {
    let mut publish: Vec<String> = mqtt.imports.iter().map(|r| r.to.clone()).collect();
    let mut subscribe: Vec<String> = mqtt.exports.iter().map(|r| r.from.clone()).collect();
    if let Some(z) = &mqtt.zigbee2mqtt {
        publish.push(format!("{}/#", z.bus_prefix));
        subscribe.push(z.command_filter());
    }
    if mqtt.homeassistant.as_ref().is_some_and(|h| h.discovery) {
        subscribe.push("$iglu/plugins/+/state".to_owned());
    }
    Grants {
        publish,
        subscribe,
        host_api: vec!["events.*".to_owned()],
    }
}

/// Makes the bridge's relative file paths relative to the config file's
/// directory (a bare `command` name is looked up in `PATH`, as for any plugin).
pub fn resolve_relative_to(mqtt: &mut MqttConfig, base: &Path) {
    let files = [
        &mut mqtt.password_file,
        &mut mqtt.ca_file,
        &mut mqtt.client_cert_file,
        &mut mqtt.client_key_file,
    ];
    for p in files.into_iter().flatten() {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
    if let Some(c) = mqtt.command.as_mut() {
        if c.is_relative() && c.components().count() > 1 {
            *c = base.join(&*c);
        }
    }
}

fn beside_iglu() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(BRIDGE_BINARY)))
        .unwrap_or_else(|| PathBuf::from(BRIDGE_BINARY))
}

/// The machine's host name (the default `host_id`).
fn machine_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use std::path::Path;

    #[test]
    fn mqtt_becomes_a_bridge_plugin_with_exactly_its_grants() {
        let c = Config::parse(
            r#"
            [mqtt]
            url = "mqtt://127.0.0.1:1883"
            host_id = "hub"
            username = "iglu"
            password_file = "secrets/mqtt"
            [mqtt.zigbee2mqtt]
            [[mqtt.import]]
            from = "sensors/+"
            to = "home/+/reading"
            [[mqtt.export]]
            from = "home/+/light/state"
            to = "hub/+/light"
            "#,
            Path::new("/etc/iglu/iglu.toml"),
        )
        .expect("valid");
        let bridge = c
            .plugins
            .iter()
            .find(|p| p.id == "mqtt-bridge")
            .expect("added");
        let g = bridge.permissions.as_ref().expect("grants");
        assert_eq!(g.publish, ["home/+/reading", "home/#"]);
        assert_eq!(g.subscribe, ["home/+/light/state", "home/#"]);
        let sandbox = bridge.sandbox.as_ref().expect("sandbox");
        assert!(sandbox.network);
        assert_eq!(sandbox.read, [Path::new("/etc/iglu/secrets/mqtt")]);
        let json = &bridge.env[iglu_mqtt::config::ENV];
        assert!(json.contains("\"client_id\":\"iglu-hub\""), "{json}");
    }

    #[test]
    fn bad_mqtt_is_refused_at_load_with_the_key() {
        let e = Config::parse("[mqtt]\nurl = \"tcp://x\"\n", Path::new("/x.toml"))
            .expect_err("not an mqtt url")
            .to_string();
        assert!(e.contains("[mqtt] url"), "{e}");
        let e = Config::parse(
            "[mqtt]\nurl = \"mqtt://x\"\n[[plugin]]\nid = \"mqtt-bridge\"\ncommand = \"/bin/true\"\n",
            Path::new("/x.toml"),
        )
        .expect_err("the id is taken")
        .to_string();
        assert!(e.contains("twice"), "{e}");
    }
}

#[cfg(test)]
mod password_tests {
    use super::super::Config;
    use std::path::Path;

    #[test]
    fn a_password_from_the_environment_goes_to_the_bridge_alone() {
        // A name no other test uses: tests run in parallel in one process.
        std::env::set_var("IGLU_TEST_MQTT_PW_81", "s3cret");
        let c = Config::parse(
            "[mqtt]\nurl = \"mqtt://x\"\nusername = \"u\"\npassword_env = \"IGLU_TEST_MQTT_PW_81\"\n",
            Path::new("/x.toml"),
        )
        .expect("valid");
        let bridge = c
            .plugins
            .iter()
            .find(|p| p.id == "mqtt-bridge")
            .expect("added");
        assert_eq!(bridge.env[super::PASSWORD_ENV], "s3cret");
        assert!(
            bridge.env[iglu_mqtt::config::ENV].contains("\"password_env\":\"IGLU_MQTT_PASSWORD\"")
        );
        let scrubbed = super::secret_env(c.mqtt.as_ref());
        assert!(
            scrubbed.iter().any(|v| v == "IGLU_TEST_MQTT_PW_81"),
            "{scrubbed:?}"
        );
        let e = Config::parse(
            "[mqtt]\nurl = \"mqtt://x\"\nusername = \"u\"\npassword_env = \"IGLU_TEST_MQTT_UNSET_82\"\n",
            Path::new("/x.toml"),
        )
        .expect_err("unset")
        .to_string();
        assert!(e.contains("IGLU_TEST_MQTT_UNSET_82"), "{e}");
    }
}
