// A typed client's method takes the interface's parameter types: a room
// name where a temperature goes does not compile.
use iglu_interfaces::thermostat::ThermostatClient;

async fn set(thermostat: ThermostatClient<iglu_sdk::HostClient>) {
    let _ = thermostat.set_target("hall".to_string(), "warm").await;
}

fn main() {}
