//! A small bot: joins a room and answers `!echo TEXT` with `TEXT`.
//!
//! ```text
//! cargo run -p chat-protocol --features client --example echo_bot -- ws://127.0.0.1:8000 lobby
//! ```

use chat_protocol::{Client, ConnectOptions, RoomName, ServerEvent, ServerUrl, UserName};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let server: ServerUrl = args
        .next()
        .as_deref()
        .unwrap_or("ws://127.0.0.1:8000")
        .parse()?;
    let room: RoomName = args.next().as_deref().unwrap_or("lobby").parse()?;
    let me = UserName::new("echo-bot")?;

    let mut client =
        Client::connect(&server, &room, &ConnectOptions::new().name(me.clone())).await?;
    eprintln!("echo-bot is in {room} on {server}; say \"!echo hello\" there");
    while let Some(event) = client.next().await {
        if let ServerEvent::Chat(chat) = event? {
            if chat.user != me.as_str() {
                if let Some(text) = chat.message.strip_prefix("!echo ") {
                    client.say(text).await?;
                }
            }
        }
    }
    Ok(())
}
