// An implementation must provide every method of the interface.
use iglu_interfaces::thermostat::{RoomState, Thermostat, ThermostatError};
use iglu_sdk::Context;

struct Half;

impl Thermostat for Half {
    async fn room(&self, _ctx: Context, room: String) -> Result<RoomState, ThermostatError> {
        Ok(RoomState { room, ..RoomState::default() })
    }
}

fn main() {}
