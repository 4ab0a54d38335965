//! Governance filters: `authz` (Cedar decisions for every request's
//! resources) and `consent` (records of subjects who did not consent to the
//! consumer's purpose are removed from fetched batches).
//!
//! Decisions come from [`gatehouse_policy`]: topic-level ones through a
//! *plan* compiled once per (principal, topic, policy version), record-level
//! ones memoized per distinct consent set, so steady-state traffic costs no
//! Cedar evaluation. A denied resource gets its Kafka authorization error
//! (`TOPIC_AUTHORIZATION_FAILED`, `GROUP_AUTHORIZATION_FAILED`,
//! `CLUSTER_AUTHORIZATION_FAILED`) while the other resources of the same
//! request proceed: denied topics are taken out of the request, and their
//! errors are put back into the cluster's response.

use std::sync::Arc;

use bytes::Bytes;
use gatehouse_policy::{Action, Catalog, PolicyStore, PrincipalInfo, Resource, SubjectLocator};
use kafka_protocol::messages::{
    fetch_response::{FetchableTopicResponse, PartitionData},
    list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse},
    produce_response::{PartitionProduceResponse, TopicProduceResponse},
    ApiKey, FetchResponse, ListOffsetsResponse, ProduceResponse, RequestKind, ResponseKind,
    TopicName,
};

use crate::consent::ConsentStore;
use crate::filter::{
    Direction, Filter, FilterFuture, Request, RequestAction, Response, ResponseAction,
    SessionContext,
};
use crate::principal::{AttributeValue, Principal};
use crate::records::{rewrite_records, RecordsError, RecordsOptions, Verdict};

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const GROUP_AUTHORIZATION_FAILED: i16 = 30;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
const CORRUPT_MESSAGE: i16 = 2;
const POLICY_VIOLATION: i16 = 44;

/// The policy side of a principal.
pub fn principal_info(p: Option<&Principal>) -> PrincipalInfo {
    let Some(p) = p else {
        return PrincipalInfo::new("anonymous", "", "", Vec::<String>::new());
    };
    let get = |k: &str| p.attribute(k).unwrap_or_default().to_string();
    let mut info = PrincipalInfo::new(
        p.name.clone(),
        get("team"),
        get("region"),
        p.attribute_list("purposes"),
    );
    for (k, v) in &p.attributes {
        if matches!(k.as_str(), "team" | "region" | "purposes") {
            continue;
        }
        let values = match v {
            AttributeValue::String(s) => vec![s.clone()],
            AttributeValue::List(l) => l.clone(),
        };
        info.attributes.insert(k.clone(), values);
    }
    info
}

/// Which topics of a request were refused, by API.
#[derive(Debug, Default)]
struct Refused {
    /// (topic, partitions) refused with `code`.
    topics: Vec<(TopicName, Vec<i32>, i16)>,
}

/// Cedar authorization of every request.
#[derive(Debug)]
pub struct Authz {
    policies: Arc<PolicyStore>,
    catalog: Arc<Catalog>,
}

impl Authz {
    /// A filter deciding with `policies` about the topics of `catalog`.
    pub fn new(policies: Arc<PolicyStore>, catalog: Arc<Catalog>) -> Self {
        Self { policies, catalog }
    }

    fn topic_allowed(&self, who: &PrincipalInfo, action: Action, topic: &str) -> bool {
        self.policies
            .authorize(who, action, Resource::Topic(topic), &self.catalog)
            .allowed
    }

    fn group_allowed(&self, who: &PrincipalInfo, action: Action, group: &str) -> bool {
        self.policies
            .authorize(who, action, Resource::Group(group), &self.catalog)
            .allowed
    }

    fn cluster_allowed(&self, who: &PrincipalInfo, action: Action) -> bool {
        self.policies
            .authorize(who, action, Resource::Cluster, &self.catalog)
            .allowed
    }
}

const NAME: &str = "authz";

fn deny_log(s: &SessionContext, api: ApiKey, what: &str) {
    tracing::info!(
        peer = %s.peer,
        principal = s.principal.as_ref().map(|p| p.name.as_str()).unwrap_or("anonymous"),
        ?api,
        resource = what,
        "denied"
    );
}

impl Filter for Authz {
    fn name(&self) -> &'static str {
        NAME
    }

    fn wants(&self, api: ApiKey, direction: Direction) -> bool {
        match direction {
            // Deny by default: every request is looked at.
            Direction::Request => !matches!(
                api,
                ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
            ),
            Direction::Response => matches!(api, ApiKey::Metadata | ApiKey::ListGroups),
        }
    }

    fn max_version(&self, api: ApiKey) -> Option<i16> {
        // Later versions name topics by id only.
        match api {
            ApiKey::Fetch => Some(12),
            ApiKey::Produce => Some(9),
            ApiKey::OffsetCommit | ApiKey::OffsetFetch => Some(8),
            _ => None,
        }
    }

    fn on_request<'a>(
        &'a self,
        s: &'a SessionContext,
        r: &'a mut Request,
    ) -> FilterFuture<'a, RequestAction> {
        let who = principal_info(s.principal.as_ref());
        let action = self.decide_request(s, &who, r);
        Box::pin(async move { action })
    }

    fn on_response<'a>(
        &'a self,
        s: &'a SessionContext,
        r: &'a mut Response,
    ) -> FilterFuture<'a, ResponseAction> {
        let who = principal_info(s.principal.as_ref());
        let refused: Option<Refused> = r.notes.take(NAME);
        match &mut r.body {
            ResponseKind::Metadata(m) => {
                // Only topics the principal may describe are shown.
                m.topics.retain(|t| {
                    t.name
                        .as_ref()
                        .is_none_or(|n| self.topic_allowed(&who, Action::Describe, n.0.as_str()))
                });
            }
            ResponseKind::ListGroups(l) => {
                l.groups.retain(|g| {
                    self.group_allowed(&who, Action::DescribeGroup, g.group_id.0.as_str())
                });
            }
            ResponseKind::Produce(p) => {
                for (name, parts, code) in refused.map(|r| r.topics).unwrap_or_default() {
                    let errors = parts.into_iter().map(|i| {
                        PartitionProduceResponse::default()
                            .with_index(i)
                            .with_error_code(code)
                            .with_base_offset(-1)
                    });
                    // Refused partitions of a topic whose others went through
                    // join that topic's entry.
                    match p.responses.iter_mut().find(|t| t.name == name) {
                        Some(t) => t.partition_responses.extend(errors),
                        None => p.responses.push(
                            TopicProduceResponse::default()
                                .with_name(name)
                                .with_partition_responses(errors.collect()),
                        ),
                    }
                }
            }
            ResponseKind::Fetch(f) => {
                for (name, parts, code) in refused.map(|r| r.topics).unwrap_or_default() {
                    f.responses.push(fetch_errors(name, parts, code));
                }
            }
            ResponseKind::ListOffsets(l) => {
                for (name, parts, code) in refused.map(|r| r.topics).unwrap_or_default() {
                    l.topics.push(list_offsets_errors(name, parts, code));
                }
            }
            _ => {}
        }
        Box::pin(async { ResponseAction::Continue })
    }
}

fn fetch_errors(name: TopicName, parts: Vec<i32>, code: i16) -> FetchableTopicResponse {
    FetchableTopicResponse::default()
        .with_topic(name)
        .with_partitions(
            parts
                .into_iter()
                .map(|i| {
                    PartitionData::default()
                        .with_partition_index(i)
                        .with_error_code(code)
                        .with_high_watermark(-1)
                        .with_records(Some(Bytes::new()))
                })
                .collect(),
        )
}

fn list_offsets_errors(name: TopicName, parts: Vec<i32>, code: i16) -> ListOffsetsTopicResponse {
    ListOffsetsTopicResponse::default()
        .with_name(name)
        .with_partitions(
            parts
                .into_iter()
                .map(|i| {
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(i)
                        .with_error_code(code)
                        .with_offset(-1)
                        .with_timestamp(-1)
                })
                .collect(),
        )
}

impl Authz {
    fn decide_request(
        &self,
        s: &SessionContext,
        who: &PrincipalInfo,
        r: &mut Request,
    ) -> RequestAction {
        let api = r.api;
        match &mut r.body {
            RequestKind::Produce(p) => {
                let mut refused = self.take_refused(
                    s,
                    who,
                    api,
                    Action::Produce,
                    &mut p.topic_data,
                    |t| &t.name,
                    |t| t.partition_data.iter().map(|p| p.index).collect(),
                );
                // Per record (governed topics): the `produce_record` policies
                // decide on each record's region; a partition with a refused
                // record is refused as a whole, nothing of it is stored.
                for t in &mut p.topic_data {
                    let name = t.name.0.to_string();
                    let info = self.catalog.lookup(&name);
                    if !info.governed() {
                        continue;
                    }
                    let plan = self.policies.plan(who, &name, &self.catalog);
                    let residency = info.residency().to_string();
                    let mut bad = Vec::new();
                    t.partition_data.retain(|part| {
                        let Some(records) = &part.records else {
                            return true;
                        };
                        let verdict =
                            crate::records::decode_record_set(records, &RecordsOptions::produce())
                                .map(|set| {
                                    self.policies.count_record_decisions(
                                        set.batches.iter().map(|b| b.records.len() as u64).sum(),
                                    );
                                    set.batches
                                        .iter()
                                        .flat_map(|b| b.records.iter())
                                        .all(|rec| {
                                            let region = rec
                                                .headers
                                                .last(b"region")
                                                .and_then(|h| h.value)
                                                .and_then(|v| std::str::from_utf8(v).ok())
                                                .unwrap_or(&residency);
                                            plan.produce_record_allowed(region)
                                        })
                                });
                        match verdict {
                            Ok(true) => true,
                            Ok(false) => {
                                deny_log(s, api, &format!("{name}: record region"));
                                bad.push((part.index, POLICY_VIOLATION));
                                false
                            }
                            Err(_) => {
                                bad.push((part.index, CORRUPT_MESSAGE));
                                false
                            }
                        }
                    });
                    for (index, code) in bad {
                        refused.topics.push((t.name.clone(), vec![index], code));
                    }
                }
                p.topic_data.retain(|t| !t.partition_data.is_empty());
                if refused.topics.is_empty() {
                    return RequestAction::Continue;
                }
                if p.topic_data.is_empty() {
                    if p.acks == 0 {
                        return RequestAction::Drop;
                    }
                    let mut resp = ProduceResponse::default();
                    for (name, parts, code) in refused.topics {
                        resp.responses.push(
                            TopicProduceResponse::default()
                                .with_name(name)
                                .with_partition_responses(
                                    parts
                                        .into_iter()
                                        .map(|i| {
                                            PartitionProduceResponse::default()
                                                .with_index(i)
                                                .with_error_code(code)
                                                .with_base_offset(-1)
                                        })
                                        .collect(),
                                ),
                        );
                    }
                    return RequestAction::Respond(Box::new(ResponseKind::Produce(resp)));
                }
                r.notes.insert(NAME, refused);
                RequestAction::Continue
            }
            RequestKind::Fetch(f) => {
                if f.replica_id.0 >= 0 {
                    return RequestAction::Close("replica fetches are not served".into());
                }
                let refused = self.take_refused(
                    s,
                    who,
                    api,
                    Action::Consume,
                    &mut f.topics,
                    |t| &t.topic,
                    |t| t.partitions.iter().map(|p| p.partition).collect(),
                );
                let all_refused = f.topics.is_empty();
                finish(refused, all_refused, &mut r.notes, |topics| {
                    let mut resp = FetchResponse::default();
                    for (name, parts, code) in topics {
                        resp.responses.push(fetch_errors(name, parts, code));
                    }
                    ResponseKind::Fetch(resp)
                })
            }
            RequestKind::ListOffsets(l) => {
                let refused = self.take_refused(
                    s,
                    who,
                    api,
                    Action::Describe,
                    &mut l.topics,
                    |t| &t.name,
                    |t| t.partitions.iter().map(|p| p.partition_index).collect(),
                );
                let all_refused = l.topics.is_empty();
                finish(refused, all_refused, &mut r.notes, |topics| {
                    let mut resp = ListOffsetsResponse::default();
                    for (name, parts, code) in topics {
                        resp.topics.push(list_offsets_errors(name, parts, code));
                    }
                    ResponseKind::ListOffsets(resp)
                })
            }
            RequestKind::Metadata(m) => {
                // Auto-creation only for who may create the topic.
                if m.allow_auto_topic_creation {
                    let all_creatable = m.topics.iter().flatten().all(|t| {
                        t.name.as_ref().is_some_and(|n| {
                            self.topic_allowed(who, Action::CreateTopic, n.0.as_str())
                        })
                    });
                    if !all_creatable {
                        m.allow_auto_topic_creation = false;
                    }
                }
                RequestAction::Continue
            }
            RequestKind::FindCoordinator(_) => RequestAction::Continue,
            RequestKind::JoinGroup(g) => {
                self.group(s, who, api, Action::JoinGroup, g.group_id.0.as_str())
            }
            RequestKind::SyncGroup(g) => {
                self.group(s, who, api, Action::JoinGroup, g.group_id.0.as_str())
            }
            RequestKind::Heartbeat(g) => {
                self.group(s, who, api, Action::JoinGroup, g.group_id.0.as_str())
            }
            RequestKind::LeaveGroup(g) => {
                self.group(s, who, api, Action::JoinGroup, g.group_id.0.as_str())
            }
            RequestKind::OffsetFetch(o) => {
                let groups: Vec<String> = if o.groups.is_empty() {
                    vec![o.group_id.0.to_string()]
                } else {
                    o.groups.iter().map(|g| g.group_id.0.to_string()).collect()
                };
                for g in groups {
                    if let a @ RequestAction::Respond(_) =
                        self.group(s, who, api, Action::DescribeGroup, &g)
                    {
                        return a;
                    }
                }
                RequestAction::Continue
            }
            RequestKind::OffsetCommit(o) => {
                let group = o.group_id.0.to_string();
                let topics_ok = o
                    .topics
                    .iter()
                    .all(|t| self.topic_allowed(who, Action::Consume, t.name.0.as_str()));
                if !self.group_allowed(who, Action::CommitOffset, &group) || !topics_ok {
                    deny_log(s, api, &group);
                    return self.respond_error(api, r.version, GROUP_AUTHORIZATION_FAILED);
                }
                RequestAction::Continue
            }
            RequestKind::DescribeGroups(d) => {
                if d.groups
                    .iter()
                    .all(|g| self.group_allowed(who, Action::DescribeGroup, g.0.as_str()))
                {
                    RequestAction::Continue
                } else {
                    deny_log(s, api, "groups");
                    self.respond_error(api, r.version, GROUP_AUTHORIZATION_FAILED)
                }
            }
            RequestKind::ListGroups(_) => RequestAction::Continue,
            RequestKind::DeleteGroups(d) => {
                if d.groups_names
                    .iter()
                    .all(|g| self.group_allowed(who, Action::DeleteGroup, g.0.as_str()))
                {
                    RequestAction::Continue
                } else {
                    deny_log(s, api, "groups");
                    self.respond_error(api, r.version, GROUP_AUTHORIZATION_FAILED)
                }
            }
            RequestKind::CreateTopics(c) => self.topics_all(
                s,
                who,
                api,
                r.version,
                Action::CreateTopic,
                c.topics.iter().map(|t| t.name.0.to_string()).collect(),
            ),
            RequestKind::DeleteTopics(d) => {
                let mut names: Vec<String> =
                    d.topic_names.iter().map(|n| n.0.to_string()).collect();
                names.extend(
                    d.topics
                        .iter()
                        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string())),
                );
                if d.topics.iter().any(|t| t.name.is_none()) {
                    return self.respond_error(api, r.version, TOPIC_AUTHORIZATION_FAILED);
                }
                self.topics_all(s, who, api, r.version, Action::DeleteTopic, names)
            }
            RequestKind::CreatePartitions(c) => self.topics_all(
                s,
                who,
                api,
                r.version,
                Action::AlterTopic,
                c.topics.iter().map(|t| t.name.0.to_string()).collect(),
            ),
            RequestKind::DeleteRecords(d) => self.topics_all(
                s,
                who,
                api,
                r.version,
                Action::DeleteRecords,
                d.topics.iter().map(|t| t.name.0.to_string()).collect(),
            ),
            RequestKind::DescribeConfigs(d) => {
                let topics: Vec<String> = d
                    .resources
                    .iter()
                    .filter(|r| r.resource_type == 2)
                    .map(|r| r.resource_name.to_string())
                    .collect();
                if d.resources.iter().any(|r| r.resource_type != 2)
                    && !self.cluster_allowed(who, Action::ClusterAdmin)
                {
                    return self.respond_error(api, r.version, CLUSTER_AUTHORIZATION_FAILED);
                }
                self.topics_all(s, who, api, r.version, Action::DescribeConfigs, topics)
            }
            RequestKind::AlterConfigs(a) => {
                if a.resources.iter().any(|r| r.resource_type != 2) {
                    return self.respond_error(api, r.version, CLUSTER_AUTHORIZATION_FAILED);
                }
                let topics = a
                    .resources
                    .iter()
                    .map(|r| r.resource_name.to_string())
                    .collect();
                self.topics_all(s, who, api, r.version, Action::AlterTopic, topics)
            }
            RequestKind::IncrementalAlterConfigs(a) => {
                if a.resources.iter().any(|r| r.resource_type != 2) {
                    return self.respond_error(api, r.version, CLUSTER_AUTHORIZATION_FAILED);
                }
                let topics = a
                    .resources
                    .iter()
                    .map(|r| r.resource_name.to_string())
                    .collect();
                self.topics_all(s, who, api, r.version, Action::AlterTopic, topics)
            }
            RequestKind::InitProducerId(i) => {
                if i.transactional_id.is_some()
                    || !self.cluster_allowed(who, Action::IdempotentWrite)
                {
                    deny_log(s, api, "cluster");
                    return self.respond_error(api, r.version, CLUSTER_AUTHORIZATION_FAILED);
                }
                RequestAction::Continue
            }
            RequestKind::DescribeCluster(_) => {
                if self.cluster_allowed(who, Action::DescribeCluster) {
                    RequestAction::Continue
                } else {
                    deny_log(s, api, "cluster");
                    self.respond_error(api, r.version, CLUSTER_AUTHORIZATION_FAILED)
                }
            }
            _ => {
                deny_log(s, api, "api");
                RequestAction::Close(format!("{api:?} is not allowed through the proxy"))
            }
        }
    }

    /// Takes the topics of `topics` that `who` may not `action` out of the
    /// request, with their partitions, for their errors to be answered.
    #[allow(clippy::too_many_arguments)]
    fn take_refused<T>(
        &self,
        s: &SessionContext,
        who: &PrincipalInfo,
        api: ApiKey,
        action: Action,
        topics: &mut Vec<T>,
        name: impl Fn(&T) -> &TopicName,
        partitions: impl Fn(&T) -> Vec<i32>,
    ) -> Refused {
        let mut refused = Refused::default();
        topics.retain(|t| {
            let n = name(t);
            if self.topic_allowed(who, action, n.0.as_str()) {
                return true;
            }
            deny_log(s, api, n.0.as_str());
            refused
                .topics
                .push((n.clone(), partitions(t), TOPIC_AUTHORIZATION_FAILED));
            false
        });
        refused
    }

    fn group(
        &self,
        s: &SessionContext,
        who: &PrincipalInfo,
        api: ApiKey,
        action: Action,
        group: &str,
    ) -> RequestAction {
        if self.group_allowed(who, action, group) {
            return RequestAction::Continue;
        }
        deny_log(s, api, group);
        error_response(api, GROUP_AUTHORIZATION_FAILED)
    }

    fn topics_all(
        &self,
        s: &SessionContext,
        who: &PrincipalInfo,
        api: ApiKey,
        version: i16,
        action: Action,
        topics: Vec<String>,
    ) -> RequestAction {
        match topics.iter().find(|t| !self.topic_allowed(who, action, t)) {
            None => RequestAction::Continue,
            Some(t) => {
                // Admin requests are all-or-nothing: the refused topic is
                // named in the log; every resource of the request gets the
                // authorization error.
                deny_log(s, api, t);
                self.respond_error(api, version, TOPIC_AUTHORIZATION_FAILED)
            }
        }
    }

    fn respond_error(&self, api: ApiKey, _version: i16, code: i16) -> RequestAction {
        error_response(api, code)
    }
}

/// Lets a request with refused topics go on (its errors are added to the
/// cluster's response), or answers it here when nothing of it is left.
fn finish(
    refused: Refused,
    all_refused: bool,
    notes: &mut crate::filter::Notes,
    answer: impl FnOnce(Vec<(TopicName, Vec<i32>, i16)>) -> ResponseKind,
) -> RequestAction {
    if refused.topics.is_empty() {
        return RequestAction::Continue;
    }
    if all_refused {
        return RequestAction::Respond(Box::new(answer(refused.topics)));
    }
    notes.insert(NAME, refused);
    RequestAction::Continue
}

/// A whole-request error response for the APIs that are refused as a whole.
fn error_response(api: ApiKey, code: i16) -> RequestAction {
    use kafka_protocol::messages::*;
    let body = match api {
        ApiKey::JoinGroup => ResponseKind::JoinGroup(
            JoinGroupResponse::default()
                .with_error_code(code)
                .with_generation_id(-1),
        ),
        ApiKey::SyncGroup => {
            ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(code))
        }
        ApiKey::Heartbeat => {
            ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(code))
        }
        ApiKey::LeaveGroup => {
            ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(code))
        }
        ApiKey::OffsetFetch => {
            ResponseKind::OffsetFetch(OffsetFetchResponse::default().with_error_code(code))
        }
        ApiKey::InitProducerId => ResponseKind::InitProducerId(
            InitProducerIdResponse::default()
                .with_error_code(code)
                .with_producer_id((-1).into())
                .with_producer_epoch(-1),
        ),
        ApiKey::DescribeCluster => {
            ResponseKind::DescribeCluster(DescribeClusterResponse::default().with_error_code(code))
        }
        // The other APIs carry errors per resource; refusing them wholesale
        // without echoing each resource would confuse clients, so the
        // connection is closed with a log line instead.
        _ => return RequestAction::Close(format!("{api:?} refused by policy")),
    };
    RequestAction::Respond(Box::new(body))
}

// === consent ===

/// Removes fetched records whose data subject did not consent to the
/// consumer's purpose (or whose region the policies refuse), as the
/// `consume_record` policies decide.
#[derive(Debug)]
pub struct Consent {
    policies: Arc<PolicyStore>,
    catalog: Arc<Catalog>,
    store: Arc<ConsentStore>,
}

const CONSENT: &str = "consent";

impl Consent {
    /// A filter deciding with `policies` over the subjects in `store`.
    pub fn new(
        policies: Arc<PolicyStore>,
        catalog: Arc<Catalog>,
        store: Arc<ConsentStore>,
    ) -> Self {
        Self {
            policies,
            catalog,
            store,
        }
    }
}

/// Finds the subject id of a record.
fn subject_of(
    locator: &SubjectLocator,
    key: Option<&Bytes>,
    value: Option<&Bytes>,
    headers: &crate::records::Headers,
) -> Option<String> {
    match locator {
        SubjectLocator::Key => key
            .and_then(|k| std::str::from_utf8(k).ok())
            .map(str::to_string),
        SubjectLocator::Header(name) => headers
            .last(name.as_bytes())
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_string),
        SubjectLocator::Json(path) => value.and_then(|v| json_string_at(v, path.steps())),
    }
}

/// The string at a path (member names from the root) of a JSON document,
/// without building the whole document.
pub fn json_string_at<'p>(doc: &[u8], steps: impl Iterator<Item = &'p str>) -> Option<String> {
    use serde_json::value::RawValue;
    let mut current: &RawValue = serde_json::from_slice(doc).ok()?;
    for step in steps {
        let map: std::collections::HashMap<&str, &RawValue> =
            serde_json::from_str(current.get()).ok()?;
        current = map.get(step).copied()?;
    }
    serde_json::from_str::<String>(current.get()).ok()
}

impl Filter for Consent {
    fn name(&self) -> &'static str {
        CONSENT
    }

    fn wants(&self, api: ApiKey, direction: Direction) -> bool {
        api == ApiKey::Fetch && direction == Direction::Request
    }

    fn on_request<'a>(
        &'a self,
        _s: &'a SessionContext,
        r: &'a mut Request,
    ) -> FilterFuture<'a, RequestAction> {
        if let RequestKind::Fetch(f) = &r.body {
            let governed = f
                .topics
                .iter()
                .any(|t| self.catalog.lookup(t.topic.0.as_str()).subject().is_some());
            if governed {
                r.notes.insert(CONSENT, ());
            }
        }
        Box::pin(async { RequestAction::Continue })
    }

    fn on_response<'a>(
        &'a self,
        s: &'a SessionContext,
        r: &'a mut Response,
    ) -> FilterFuture<'a, ResponseAction> {
        let _: Option<()> = r.notes.take(CONSENT);
        let who = principal_info(s.principal.as_ref());
        let mut outcome = ResponseAction::Continue;
        if let ResponseKind::Fetch(f) = &mut r.body {
            for t in &mut f.responses {
                let topic = t.topic.0.to_string();
                let info = self.catalog.lookup(&topic);
                let Some(locator) = info.subject().cloned() else {
                    continue;
                };
                let plan = self.policies.plan(&who, &topic, &self.catalog);
                let residency = info.residency().to_string();
                for p in &mut t.partitions {
                    let Some(records) = &p.records else { continue };
                    if records.is_empty() {
                        continue;
                    }
                    let result = rewrite_records(records, &RecordsOptions::fetch(), |_, rec| {
                        let subject = subject_of(
                            &locator,
                            rec.key.as_ref(),
                            rec.value.as_ref(),
                            &rec.headers,
                        );
                        let consent = subject.as_deref().and_then(|s| self.store.get(s));
                        let region = rec
                            .headers
                            .last(b"region")
                            .and_then(|h| h.value)
                            .and_then(|v| std::str::from_utf8(v).ok())
                            .map(str::to_string)
                            .unwrap_or_else(|| residency.clone());
                        let allowed = plan
                            .consume_record_allowed(consent.as_ref().map(|c| c.policy()), &region);
                        Ok::<_, RecordsError>(if allowed {
                            Verdict::Keep
                        } else {
                            Verdict::Drop
                        })
                    });
                    match result {
                        Ok(rw) => {
                            self.policies
                                .count_record_decisions(rw.stats.records_seen as u64);
                            if rw.stats.records_dropped > 0 {
                                tracing::debug!(
                                    topic,
                                    partition = p.partition_index,
                                    dropped = rw.stats.records_dropped,
                                    "records withheld for consent"
                                );
                            }
                            p.records = Some(rw.records);
                        }
                        Err(e) => {
                            outcome = ResponseAction::Close(format!("cannot filter {topic}: {e}"))
                        }
                    }
                }
            }
        }
        Box::pin(async move { outcome })
    }
}
