// A typed client's method returns the interface's result type: reading it
// as something else does not compile.
use iglu_interfaces::thermostat::ThermostatClient;

async fn read(thermostat: ThermostatClient<iglu_sdk::HostClient>) {
    let target: String = thermostat.room("hall".to_string()).await.unwrap();
    let _ = target;
}

fn main() {}
