//! Admin operations through librdkafka's admin client.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use gatehouse_tests::TestBroker;
use gatehouse_tests::Via;
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, NewPartitions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer};

use crate::support::{config, consume, consumer, create_topic, produce, producer};

fn admin(b: &str) -> Result<AdminClient<DefaultClientContext>> {
    Ok(config(b, &[]).create()?)
}

fn opts() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))
}

async fn topic_config(
    a: &AdminClient<DefaultClientContext>,
    topic: &str,
    key: &str,
) -> Result<(String, String)> {
    let res = a
        .describe_configs([&ResourceSpecifier::Topic(topic)], &opts())
        .await?;
    let r = res.into_iter().next().context("no result")??;
    let e = r.get(key).with_context(|| format!("{key} not described"))?;
    Ok((
        e.value.clone().unwrap_or_default(),
        format!("{:?}", e.source),
    ))
}

async fn configs_partitions_and_groups(via: Via) -> Result<()> {
    let broker = TestBroker::start_via(via).await?;
    let b = broker.bootstrap();
    create_topic(&b, "cfg", 1, &[("retention.ms", "3600000")]).await?;
    let a = admin(&b)?;

    let (v, src) = topic_config(&a, "cfg", "retention.ms").await?;
    ensure!(
        v == "3600000" && src == "DynamicTopic",
        "retention.ms = {v} from {src:?}"
    );
    let (v, src) = topic_config(&a, "cfg", "cleanup.policy").await?;
    ensure!(
        v == "delete" && src == "Default",
        "cleanup.policy = {v} from {src:?}"
    );

    // AlterConfigs replaces the overrides: retention.ms falls back to the default.
    let alter = AlterConfig::new(ResourceSpecifier::Topic("cfg")).set("cleanup.policy", "compact");
    for r in a.alter_configs([&alter], &opts()).await? {
        if let Err((_, e)) = r {
            bail!("alter failed: {e}");
        }
    }
    ensure!(topic_config(&a, "cfg", "cleanup.policy").await?.0 == "compact");
    ensure!(topic_config(&a, "cfg", "retention.ms").await?.1 == "Default");
    // An invalid value is refused and changes nothing (rdkafka does not
    // surface per-resource AlterConfigs errors, so check the effect: had it
    // been accepted, the cleanup.policy override would be gone).
    let bad = AlterConfig::new(ResourceSpecifier::Topic("cfg")).set("retention.ms", "soon");
    a.alter_configs([&bad], &opts()).await?;
    ensure!(topic_config(&a, "cfg", "cleanup.policy").await?.0 == "compact");
    ensure!(topic_config(&a, "cfg", "retention.ms").await?.1 == "Default");

    // Partitions can only grow.
    let r = a
        .create_partitions([&NewPartitions::new("cfg", 4)], &opts())
        .await?;
    ensure!(r.iter().all(|r| r.is_ok()), "grow: {r:?}");
    let r = a
        .create_partitions([&NewPartitions::new("cfg", 2)], &opts())
        .await?;
    ensure!(r.iter().all(|r| r.is_err()), "shrink accepted");
    let p = producer(&b, &[])?;
    produce(&p, "cfg", "cfg", 0..200).await?;
    let c = consumer(&b, "cfg-readers", &[])?;
    let md = c.fetch_metadata(Some("cfg"), Duration::from_secs(10))?;
    ensure!(md.topics()[0].partitions().len() == 4);

    // A group with committed offsets is listed, can't be deleted while a
    // member is in it, and can once it left.
    c.subscribe(&["cfg"])?;
    consume(&c, 200, Duration::from_secs(30)).await?;
    c.commit_consumer_state(CommitMode::Sync)?;
    let groups = c.fetch_group_list(None, Duration::from_secs(10))?;
    let g = groups
        .groups()
        .iter()
        .find(|g| g.name() == "cfg-readers")
        .context("group not listed")?;
    ensure!(
        g.state() == "Stable" && g.members().len() == 1,
        "group {} with {} members",
        g.state(),
        g.members().len()
    );
    let r = a.delete_groups(&["cfg-readers"], &opts()).await?;
    ensure!(
        r.iter().all(|r| r.is_err()),
        "deleted a group with a member"
    );
    c.unsubscribe();
    detach(c);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = a.delete_groups(&["cfg-readers"], &opts()).await?;
        if r.iter().all(|r| r.is_ok()) {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "group never became deletable: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Deleted offsets: a new member starts from the beginning again.
    let c = consumer(&b, "cfg-readers", &[])?;
    c.subscribe(&["cfg"])?;
    ensure!(consume(&c, 200, Duration::from_secs(30)).await?.len() == 200);

    let r = a.delete_topics(&["cfg"], &opts()).await?;
    ensure!(r.iter().all(|r| r.is_ok()));
    c.unsubscribe();
    detach(c);
    let reader: rdkafka::consumer::BaseConsumer = config(&b, &[]).create()?;
    let md = reader.fetch_metadata(None, Duration::from_secs(10))?;
    ensure!(
        md.topics().iter().all(|t| t.name() != "cfg"),
        "deleted topic still listed"
    );
    Ok(())
}

direct_and_proxied!(configs_partitions_and_groups);

/// Closes a group consumer off the async threads and without waiting:
/// librdkafka's close can block for a long time on group teardown, which
/// is not what these tests are about.
fn detach(c: rdkafka::consumer::StreamConsumer) {
    drop(tokio::task::spawn_blocking(move || drop(c)));
}
