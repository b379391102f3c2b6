// Interface parameters cross the wire: they are owned serde types, and the
// declaration says so at compile time.
use iglu_sdk::Context;

#[iglu_sdk::interface(name = "iglu.example", version = "1.0.0")]
pub trait Example {
    async fn greet(&self, ctx: Context, name: &str) -> Result<String, String>;
}

fn main() {}
