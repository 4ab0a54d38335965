//! Metadata, topics, configs, cluster and producer ids.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::{
    create_partitions_response::CreatePartitionsTopicResult,
    create_topics_response::{CreatableTopicConfigs, CreatableTopicResult},
    delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult},
    delete_topics_response::DeletableTopicResult,
    describe_cluster_response::DescribeClusterBroker,
    describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult},
    metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic},
    AlterConfigsRequest, AlterConfigsResponse, BrokerId, CreatePartitionsRequest,
    CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteRecordsRequest,
    DeleteRecordsResponse, DeleteTopicsRequest, DeleteTopicsResponse, DescribeClusterResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, InitProducerIdRequest, InitProducerIdResponse,
    MetadataRequest, MetadataResponse, TopicName,
};
use uuid::Uuid;

use super::str;
use crate::broker::Shared;
use crate::committer::{AdminOp, AdminOutcome};
use crate::error::KafkaCode;
use crate::members::Member;
use crate::topic_config;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
const TYPE_STRING: i8 = 2;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;
const TYPE_BOOLEAN: i8 = 1;
const TYPE_INT: i8 = 3;
const TYPE_DOUBLE: i8 = 6;

/// A topic's partitions with their leaders as the metadata log says, and
/// `LEADER_NOT_AVAILABLE` for a partition whose leader is not live.
fn topic_entry(
    shared: &Shared,
    live: &BTreeMap<i32, Member>,
    name: &str,
    id: Uuid,
    partitions: usize,
) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str(name))))
        .with_topic_id(id)
        .with_partitions(
            (0..partitions as i32)
                .map(|i| {
                    let p = MetadataResponsePartition::default().with_partition_index(i);
                    match shared.leader(name, i) {
                        Some((node, epoch)) if live.contains_key(&node) => p
                            .with_leader_id(BrokerId(node))
                            .with_leader_epoch(epoch)
                            .with_replica_nodes(vec![BrokerId(node)])
                            .with_isr_nodes(vec![BrokerId(node)]),
                        found => p
                            .with_error_code(KafkaCode::LeaderNotAvailable.code())
                            .with_leader_id(BrokerId(-1))
                            .with_leader_epoch(found.map_or(-1, |(_, epoch)| epoch))
                            .with_replica_nodes(
                                found.map(|(n, _)| BrokerId(n)).into_iter().collect(),
                            ),
                    }
                })
                .collect(),
        )
}

/// The live brokers as Metadata lists them, and the controller (the
/// lowest live id: every broker serves admin requests).
fn brokers(live: &BTreeMap<i32, Member>) -> (Vec<MetadataResponseBroker>, BrokerId) {
    let list = live
        .values()
        .map(|m| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(m.node))
                .with_host(str(&m.host))
                .with_port(m.port)
        })
        .collect();
    let controller = live.keys().next().copied().unwrap_or(-1);
    (list, BrokerId(controller))
}

pub(super) async fn metadata(
    shared: Arc<Shared>,
    req: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let all = match &req.topics {
        None => true,
        Some(t) => version == 0 && t.is_empty(),
    };
    // Before v4 every metadata request may create topics.
    let may_create =
        shared.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    let mut topics = Vec::new();
    let live = shared.live();
    // The catalog as the metadata log has it now: a topic another broker
    // just created or deleted is answered for as such, and this broker's
    // own copy is brought up to it first, so that what Metadata lists here
    // is served here.
    if shared.meta.catch_up().await.is_ok() {
        let behind = shared
            .state
            .read()
            .map(|s| !crate::catalog::mirror(&shared.meta.current(), &s).is_empty())
            .unwrap_or(false);
        if behind {
            if let Err((code, message)) = shared.committer.admin(AdminOp::Mirror).await {
                tracing::warn!(?code, %message, "cannot mirror the metadata log");
            }
        }
    }
    let meta = shared.meta.current();
    if all {
        for (name, id) in &meta.names {
            if let Some(t) = meta.topics.get(id) {
                topics.push(topic_entry(&shared, &live, name, *id, t.partitions.len()));
            }
        }
    } else {
        for rt in req.topics.iter().flatten() {
            let name = match &rt.name {
                Some(n) => n.0.to_string(),
                None => {
                    let found = meta.topics.get(&rt.topic_id).map(|t| t.name.clone());
                    match found {
                        Some(n) => n,
                        None => {
                            topics.push(
                                MetadataResponseTopic::default()
                                    .with_topic_id(rt.topic_id)
                                    .with_error_code(KafkaCode::UnknownTopicOrPartition.code()),
                            );
                            continue;
                        }
                    }
                }
            };
            let mut found = meta
                .names
                .get(&name)
                .and_then(|id| meta.topics.get(id).map(|t| (*id, t.partitions.len())));
            if found.is_none() && may_create && crate::committer::valid_topic_name(&name) {
                let op = AdminOp::CreateTopic {
                    name: name.clone(),
                    partitions: shared.config.default_partitions,
                    configs: BTreeMap::new(),
                    validate_only: false,
                };
                match shared.committer.admin(op).await {
                    Ok(_) | Err((KafkaCode::TopicAlreadyExists, _)) => {
                        tracing::info!(topic = %name, "auto-created topic");
                    }
                    Err((code, msg)) => {
                        tracing::warn!(topic = %name, ?code, msg, "auto-create failed")
                    }
                }
                let meta = shared.meta.current();
                found = meta
                    .names
                    .get(&name)
                    .and_then(|id| meta.topics.get(id).map(|t| (*id, t.partitions.len())));
            }
            topics.push(match found {
                Some((id, n)) => topic_entry(&shared, &live, &name, id, n),
                None => {
                    let code = if crate::committer::valid_topic_name(&name) {
                        KafkaCode::UnknownTopicOrPartition
                    } else {
                        KafkaCode::InvalidTopicException
                    };
                    MetadataResponseTopic::default()
                        .with_name(Some(TopicName(str(&name))))
                        .with_error_code(code.code())
                }
            });
        }
    }
    let (list, controller) = brokers(&live);
    MetadataResponse::default()
        .with_brokers(list)
        .with_cluster_id(Some(str(&shared.cluster_id)))
        .with_controller_id(controller)
        .with_topics(topics)
}

pub(super) fn describe_cluster(shared: &Shared) -> DescribeClusterResponse {
    let live = shared.live();
    let (_, controller) = brokers(&live);
    DescribeClusterResponse::default()
        .with_cluster_id(str(&shared.cluster_id))
        .with_controller_id(controller)
        .with_brokers(
            live.values()
                .map(|m| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(m.node))
                        .with_host(str(&m.host))
                        .with_port(m.port)
                })
                .collect(),
        )
}

fn effective_configs(overrides: &BTreeMap<String, String>) -> Vec<(String, String, bool)> {
    topic_config::all_keys()
        .map(|(k, d, _)| match overrides.get(k) {
            Some(v) => (k.to_string(), v.clone(), false),
            None => (k.to_string(), d.to_string(), true),
        })
        .collect()
}

pub(super) async fn create_topics(
    shared: Arc<Shared>,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let partitions = if t.num_partitions == -1 {
            shared.config.default_partitions
        } else {
            t.num_partitions
        };
        let configs: BTreeMap<String, String> = t
            .configs
            .iter()
            .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
            .collect();
        let result = if t.replication_factor == 0 || t.replication_factor < -1 {
            Err((
                KafkaCode::InvalidReplicationFactor,
                "replication factor must be -1 or at least 1".to_string(),
            ))
        } else {
            // Replication is the object store's job: any factor is accepted
            // and reported as 1.
            shared
                .committer
                .admin(AdminOp::CreateTopic {
                    name: name.clone(),
                    partitions,
                    configs: configs.clone(),
                    validate_only: req.validate_only,
                })
                .await
        };
        let r = CreatableTopicResult::default().with_name(t.name);
        results.push(match result {
            Ok(AdminOutcome::Created(id)) if version < 5 => {
                tracing::info!(topic = %name, partitions, "topic created");
                r.with_topic_id(id)
            }
            Ok(AdminOutcome::Created(id)) => {
                tracing::info!(topic = %name, partitions, "topic created");
                r.with_topic_id(id)
                    .with_num_partitions(partitions)
                    .with_replication_factor(1)
                    .with_configs(Some(
                        effective_configs(&configs)
                            .into_iter()
                            .map(|(k, v, default)| {
                                CreatableTopicConfigs::default()
                                    .with_name(str(&k))
                                    .with_value(Some(str(&v)))
                                    .with_config_source(if default {
                                        SOURCE_DEFAULT
                                    } else {
                                        SOURCE_DYNAMIC_TOPIC
                                    })
                            })
                            .collect(),
                    ))
            }
            Ok(_) => r,
            Err((code, msg)) => r
                .with_error_code(code.code())
                .with_error_message(Some(str(&msg)))
                .with_num_partitions(-1)
                .with_replication_factor(-1),
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

pub(super) async fn delete_topics(
    shared: Arc<Shared>,
    req: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let mut targets: Vec<(Option<String>, Uuid)> = req
        .topic_names
        .iter()
        .map(|n| (Some(n.0.to_string()), Uuid::nil()))
        .collect();
    targets.extend(
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)),
    );
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let name = name.or_else(|| {
            shared
                .state
                .read()
                .ok()
                .and_then(|s| s.topics.get(&id).map(|t| t.name.clone()))
        });
        let result = match &name {
            Some(n) => {
                shared
                    .committer
                    .admin(AdminOp::DeleteTopic { name: n.clone() })
                    .await
            }
            None => Err((
                KafkaCode::UnknownTopicOrPartition,
                "unknown topic id".to_string(),
            )),
        };
        let r = DeletableTopicResult::default()
            .with_name(name.as_deref().map(|n| TopicName(str(n))))
            .with_topic_id(id);
        responses.push(match result {
            Ok(_) => {
                tracing::info!(topic = ?name, "topic deleted");
                r
            }
            Err((code, msg)) => r
                .with_error_code(code.code())
                .with_error_message(Some(str(&msg))),
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

pub(super) async fn create_partitions(
    shared: Arc<Shared>,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let result = shared
            .committer
            .admin(AdminOp::AddPartitions {
                name: t.name.0.to_string(),
                count: t.count,
                validate_only: req.validate_only,
            })
            .await;
        let r = CreatePartitionsTopicResult::default().with_name(t.name);
        results.push(match result {
            Ok(_) => r,
            Err((code, msg)) => r
                .with_error_code(code.code())
                .with_error_message(Some(str(&msg))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}

pub(super) async fn delete_records(
    shared: Arc<Shared>,
    req: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let entries: Vec<(String, i32, i64)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.0.to_string(), p.partition_index, p.offset))
        })
        .collect();
    // Only the leader moves a partition's log start.
    let checks: Vec<Result<(), KafkaCode>> = entries
        .iter()
        .map(|(t, p, _)| shared.check_leader(t, *p))
        .collect();
    let led: Vec<(String, i32, i64)> = entries
        .into_iter()
        .zip(&checks)
        .filter(|(_, c)| c.is_ok())
        .map(|(e, _)| e)
        .collect();
    let count = led.len();
    let done = if led.is_empty() {
        Vec::new()
    } else {
        match shared
            .committer
            .admin(AdminOp::SetLogStart { entries: led })
            .await
        {
            Ok(AdminOutcome::LogStarts(r)) => r,
            Ok(_) => Vec::new(),
            Err((code, _)) => vec![Err(code); count],
        }
    };
    let mut done = done.into_iter();
    let results: Vec<Result<i64, KafkaCode>> = checks
        .into_iter()
        .map(|c| match c {
            Err(code) => Err(code),
            Ok(()) => done.next().unwrap_or(Err(KafkaCode::UnknownServerError)),
        })
        .collect();
    let mut results = results.into_iter();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let parts = t
                .partitions
                .iter()
                .map(|p| {
                    let r = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index);
                    match results.next() {
                        Some(Ok(lw)) => r.with_low_watermark(lw),
                        Some(Err(code)) => r.with_low_watermark(-1).with_error_code(code.code()),
                        None => r
                            .with_low_watermark(-1)
                            .with_error_code(KafkaCode::UnknownServerError.code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(parts)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}

fn config_type(key: &str) -> i8 {
    match key {
        "cleanup.policy" => TYPE_LIST,
        "compression.type" | "message.timestamp.type" => TYPE_STRING,
        "max.message.bytes" | "min.insync.replicas" | "segment.bytes" => TYPE_INT,
        "min.cleanable.dirty.ratio" => TYPE_DOUBLE,
        _ => TYPE_LONG,
    }
}

pub(super) fn describe_configs(
    shared: &Shared,
    req: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let results = req
        .resources
        .into_iter()
        .map(|res| {
            let wanted = |k: &str| {
                res.configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|w| w.as_str() == k))
            };
            let r = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            match res.resource_type {
                RESOURCE_TOPIC => {
                    let overrides = shared.state.read().ok().and_then(|s| {
                        s.topic(res.resource_name.as_str())
                            .map(|t| t.configs.clone())
                    });
                    let Some(overrides) = overrides else {
                        return r
                            .with_error_code(KafkaCode::UnknownTopicOrPartition.code())
                            .with_error_message(Some(str("topic does not exist")));
                    };
                    let configs = effective_configs(&overrides)
                        .into_iter()
                        .filter(|(k, ..)| wanted(k))
                        .map(|(k, v, default)| {
                            let doc = topic_config::all_keys()
                                .find(|(n, ..)| *n == k)
                                .map(|(.., d)| d);
                            DescribeConfigsResourceResult::default()
                                .with_config_type(config_type(&k))
                                .with_name(str(&k))
                                .with_value(Some(str(&v)))
                                .with_config_source(if default {
                                    SOURCE_DEFAULT
                                } else {
                                    SOURCE_DYNAMIC_TOPIC
                                })
                                .with_documentation(if req.include_documentation && version >= 3 {
                                    doc.map(str)
                                } else {
                                    None
                                })
                        })
                        .collect();
                    r.with_configs(configs)
                }
                RESOURCE_BROKER => {
                    let c = &shared.config;
                    let entries = [
                        ("broker.id", c.node_id.to_string(), TYPE_INT),
                        (
                            "auto.create.topics.enable",
                            c.auto_create_topics.to_string(),
                            TYPE_BOOLEAN,
                        ),
                        ("num.partitions", c.default_partitions.to_string(), TYPE_INT),
                        (
                            "socket.request.max.bytes",
                            c.max_frame_bytes.to_string(),
                            TYPE_INT,
                        ),
                        (
                            "log.retention.ms",
                            topic_config::default_of("retention.ms")
                                .unwrap_or("-1")
                                .to_string(),
                            TYPE_LONG,
                        ),
                        (
                            "message.max.bytes",
                            topic_config::default_of("max.message.bytes")
                                .unwrap_or("-1")
                                .to_string(),
                            TYPE_INT,
                        ),
                    ];
                    let configs = entries
                        .into_iter()
                        .filter(|(k, ..)| wanted(k))
                        .map(|(k, v, t)| {
                            DescribeConfigsResourceResult::default()
                                .with_name(str(k))
                                .with_value(Some(str(&v)))
                                .with_read_only(true)
                                .with_config_type(t)
                                .with_config_source(SOURCE_STATIC_BROKER)
                        })
                        .collect();
                    r.with_configs(configs)
                }
                other => r
                    .with_error_code(KafkaCode::InvalidRequest.code())
                    .with_error_message(Some(str(&format!(
                        "resource type {other} is not supported"
                    )))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

async fn set_topic_configs(
    shared: &Shared,
    name: &str,
    change: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), String>,
    validate_only: bool,
) -> Result<(), (KafkaCode, String)> {
    let mut configs = shared
        .state
        .read()
        .ok()
        .and_then(|s| s.topic(name).map(|t| t.configs.clone()))
        .ok_or((
            KafkaCode::UnknownTopicOrPartition,
            format!("topic '{name}' does not exist"),
        ))?;
    change(&mut configs).map_err(|m| (KafkaCode::InvalidConfig, m))?;
    shared
        .committer
        .admin(AdminOp::SetConfigs {
            name: name.to_string(),
            configs,
            validate_only,
        })
        .await
        .map(|_| ())
}

pub(super) async fn alter_configs(
    shared: Arc<Shared>,
    req: AlterConfigsRequest,
) -> AlterConfigsResponse {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    let mut responses = Vec::new();
    for res in req.resources {
        let r = AlterConfigsResourceResponse::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        let result = if res.resource_type != RESOURCE_TOPIC {
            Err((
                KafkaCode::InvalidRequest,
                "only topic configs can be altered".to_string(),
            ))
        } else {
            // AlterConfigs replaces the whole set of overrides.
            let new: BTreeMap<String, String> = res
                .configs
                .iter()
                .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
                .collect();
            set_topic_configs(
                &shared,
                res.resource_name.as_str(),
                |c| {
                    *c = new;
                    Ok(())
                },
                req.validate_only,
            )
            .await
        };
        responses.push(match result {
            Ok(()) => r,
            Err((code, msg)) => r
                .with_error_code(code.code())
                .with_error_message(Some(str(&msg))),
        });
    }
    AlterConfigsResponse::default().with_responses(responses)
}

pub(super) async fn incremental_alter_configs(
    shared: Arc<Shared>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
    let mut responses = Vec::new();
    for res in req.resources {
        let r = AlterConfigsResourceResponse::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        let result = if res.resource_type != RESOURCE_TOPIC {
            Err((
                KafkaCode::InvalidRequest,
                "only topic configs can be altered".to_string(),
            ))
        } else {
            let ops = res.configs.clone();
            set_topic_configs(
                &shared,
                res.resource_name.as_str(),
                move |c| {
                    for op in ops {
                        let key = op.name.to_string();
                        let value = op.value.as_ref().map(|v| v.to_string());
                        match (op.config_operation, value) {
                            (0, Some(v)) => {
                                c.insert(key, v);
                            }
                            (1, _) => {
                                c.remove(&key);
                            }
                            (2, Some(v)) | (3, Some(v)) => {
                                let current = c
                                    .get(&key)
                                    .cloned()
                                    .or_else(|| topic_config::default_of(&key).map(str::to_string))
                                    .unwrap_or_default();
                                let mut items: Vec<String> = current
                                    .split(',')
                                    .map(|s| s.trim().to_string())
                                    .filter(|s| !s.is_empty())
                                    .collect();
                                for item in v.split(',').map(|s| s.trim().to_string()) {
                                    if op.config_operation == 2 {
                                        if !items.contains(&item) {
                                            items.push(item);
                                        }
                                    } else {
                                        items.retain(|i| *i != item);
                                    }
                                }
                                c.insert(key, items.join(","));
                            }
                            (o, _) => return Err(format!("invalid operation {o} for '{key}'")),
                        }
                    }
                    Ok(())
                },
                req.validate_only,
            )
            .await
        };
        responses.push(match result {
            Ok(()) => r,
            Err((code, msg)) => r
                .with_error_code(code.code())
                .with_error_message(Some(str(&msg))),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

pub(super) async fn init_producer_id(
    shared: Arc<Shared>,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    if req.transactional_id.is_some() {
        return InitProducerIdResponse::default()
            .with_error_code(KafkaCode::InvalidRequest.code())
            .with_producer_id((-1).into())
            .with_producer_epoch(-1);
    }
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 {
        // KIP-360: an idempotent producer bumping its epoch after an error
        // keeps its id; sequences restart with the new epoch.
        let epoch = req.producer_epoch.checked_add(1);
        return match epoch {
            Some(e) => InitProducerIdResponse::default()
                .with_producer_id(req.producer_id)
                .with_producer_epoch(e),
            None => allocate(&shared).await,
        };
    }
    allocate(&shared).await
}

async fn allocate(shared: &Shared) -> InitProducerIdResponse {
    match shared.committer.admin(AdminOp::AllocateProducerId).await {
        Ok(AdminOutcome::ProducerId(id)) => InitProducerIdResponse::default()
            .with_producer_id(id.into())
            .with_producer_epoch(0),
        Ok(_) | Err(_) => InitProducerIdResponse::default()
            .with_error_code(KafkaCode::CoordinatorNotAvailable.code())
            .with_producer_id((-1).into())
            .with_producer_epoch(-1),
    }
}
