//! MQTT command round trip through the `mqtt-adapter`: a client publishes a
//! command to `echo` and waits for the reply, through a local mosquitto. Beside
//! it in the same run, a native responder (a plain rumqttc client answering the
//! same payloads) measures what the broker and the client alone cost.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::daemon::{install_signed, prepare_root, start};
use crate::stats::median_p99;
use crate::workspace;

const ROUND_TRIPS: usize = 500;
const SUSTAINED: usize = 3000;
const IN_FLIGHT: usize = 32;

struct Broker {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mosquitto() -> anyhow::Result<Option<Broker>> {
    let Some(binary) = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|path| Path::new(path).exists())
    else {
        return Ok(None);
    };
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = dir.path().join("mosquitto.conf");
    std::fs::write(
        &config,
        format!(
            "listener {port} 127.0.0.1\npersistence false\nuser root\nallow_anonymous true\nmax_queued_messages 100000\nset_tcp_nodelay true\n"
        ),
    )?;
    let child = Command::new(binary)
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let broker = Broker {
        child,
        port,
        _dir: dir,
    };
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(Some(broker));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!("mosquitto did not listen")
}

/// A connected client and the publishes it receives.
async fn client(
    port: u16,
    id: &str,
) -> anyhow::Result<(AsyncClient, mpsc::UnboundedReceiver<(String, Vec<u8>)>)> {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 4096);
    eventloop.network_options.set_tcp_nodelay(true);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(Packet::Publish(publish)) = event
                && tx
                    .send((publish.topic.clone(), publish.payload.to_vec()))
                    .is_err()
            {
                return;
            }
        }
    });
    Ok((client, rx))
}

/// Answers every command on `native/cmd/#` the way the adapter answers `echo`.
async fn native_responder(port: u16) -> anyhow::Result<()> {
    let (client, mut commands) = client(port, "native-responder").await?;
    client.subscribe("native/cmd/#", QoS::AtLeastOnce).await?;
    tokio::spawn(async move {
        while let Some((topic, payload)) = commands.recv().await {
            let request: Value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
            let reply = json!({"id": request["id"], "ok": true, "result": request["payload"]});
            let topic = topic.replacen("/cmd/", "/resp/", 1);
            if client
                .publish(topic, QoS::AtLeastOnce, false, reply.to_string())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    Ok(())
}

struct Measured {
    p50_us: f64,
    p99_us: f64,
    per_sec: f64,
}

/// Round trips one at a time, then a sustained run with `IN_FLIGHT` outstanding.
async fn measure(
    port: u16,
    name: &str,
    command_topic: &str,
    reply_filter: &str,
) -> anyhow::Result<Measured> {
    let (client, mut replies) = client(port, &format!("bench-{name}")).await?;
    client.subscribe(reply_filter, QoS::AtLeastOnce).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let send = |n: usize| {
        let payload = json!({"id": format!("{name}-{n}"), "payload": {"n": n}}).to_string();
        client.publish(command_topic, QoS::AtLeastOnce, false, payload)
    };
    let mut next = 0;
    let wait_reply =
        async |replies: &mut mpsc::UnboundedReceiver<(String, Vec<u8>)>| -> anyhow::Result<()> {
            let (_, body) = tokio::time::timeout(Duration::from_secs(10), replies.recv())
                .await?
                .ok_or_else(|| anyhow::anyhow!("the reply stream ended"))?;
            let body: Value = serde_json::from_slice(&body)?;
            anyhow::ensure!(body["ok"] == true, "a command failed: {body}");
            Ok(())
        };
    for _ in 0..50 {
        send(next).await?;
        next += 1;
        wait_reply(&mut replies).await?;
    }
    let mut samples = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let started = Instant::now();
        send(next).await?;
        next += 1;
        wait_reply(&mut replies).await?;
        samples.push(started.elapsed());
    }
    let (p50_us, p99_us) = median_p99(&mut samples);

    let started = Instant::now();
    let mut outstanding = 0;
    let mut sent = 0;
    while sent < SUSTAINED || outstanding > 0 {
        while outstanding < IN_FLIGHT && sent < SUSTAINED {
            send(next).await?;
            next += 1;
            sent += 1;
            outstanding += 1;
        }
        wait_reply(&mut replies).await?;
        outstanding -= 1;
    }
    let per_sec = SUSTAINED as f64 / started.elapsed().as_secs_f64();
    Ok(Measured {
        p50_us,
        p99_us,
        per_sec,
    })
}

pub async fn run(cairn: &Path) -> anyhow::Result<()> {
    let Some(broker) = mosquitto()? else {
        println!("\n(MQTT benchmark skipped: mosquitto is not installed)");
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let broker_config = format!(
        "device-id = \"bench\"\n[mqtt.brokers.local]\nurl = \"mqtt://127.0.0.1:{}\"\n",
        broker.port
    );
    prepare_root(cairn, root, &workspace().join("policies"), &broker_config)?;
    let (daemon, _) = start(cairn, root)?;
    for crate_name in ["echo", "mqtt_adapter"] {
        install_signed(cairn, root, crate_name)?;
    }
    native_responder(broker.port).await?;
    let ours = measure(
        broker.port,
        "cairn",
        "cairn/bench/cmd/echo/echo",
        "cairn/bench/resp/#",
    )
    .await?;
    let native = measure(
        broker.port,
        "native",
        "native/cmd/echo/echo",
        "native/resp/#",
    )
    .await?;
    drop(daemon);

    println!("\n### MQTT: command round trip through mosquitto on loopback (same run)\n");
    println!(
        "QoS 1 both ways; {ROUND_TRIPS} sequential round trips, then {SUSTAINED} commands with {IN_FLIGHT} in flight.\n"
    );
    println!("| responder | p50 (µs) | p99 (µs) | sustained commands/s |");
    println!("|---|---|---|---|");
    for (name, m) in [
        ("cairn: `mqtt-adapter` → `echo`", &ours),
        ("native rumqttc responder", &native),
    ] {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} |",
            m.p50_us, m.p99_us, m.per_sec
        );
    }
    println!(
        "\ncairn / native: p50 {:.2}×, sustained {:.2}×",
        ours.p50_us / native.p50_us,
        ours.per_sec / native.per_sec
    );
    Ok(())
}
