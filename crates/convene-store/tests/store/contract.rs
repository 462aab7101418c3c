//! The behaviours every `Store` must have. Each case takes a fresh, empty store.

use convene_core::store::{ApiKeyRecord, GroupListQuery, GroupRecord, InstanceRecord};
use convene_core::{
    ConnectorKind, DbError, Disappearing, GroupId, GroupJid, GroupSettings, InstanceId, PhoneNumber, Store, Timestamp,
};
use uuid::Uuid;

const T0: i64 = 1_795_000_000_000;

fn api_key(name: &str, secret_hash: &str) -> ApiKeyRecord {
    ApiKeyRecord {
        id: Uuid::new_v4(),
        name: name.to_owned(),
        prefix: format!("cv_{name}"),
        secret_hash: secret_hash.to_owned(),
        created_at: Timestamp::from_millis(T0 + 17),
    }
}

fn instance(id: i64, phone: Option<&str>) -> InstanceRecord {
    InstanceRecord {
        id: InstanceId(id),
        kind: if phone.is_some() { ConnectorKind::Whatsapp } else { ConnectorKind::Sandbox },
        name: format!("instance {id}"),
        phone: phone.map(|p| PhoneNumber::parse(p).unwrap()),
        token_hash: format!("token-hash-{id}"),
        created_at: Timestamp::from_millis(T0 + id % 1000),
    }
}

fn jid(n: u64) -> GroupJid {
    GroupJid::parse(&format!("1203630{n:011}@g.us")).unwrap()
}

fn group(instance_id: i64, jid_n: u64, created_at: i64) -> GroupRecord {
    GroupRecord {
        id: GroupId::new(),
        instance_id: InstanceId(instance_id),
        jid: jid(jid_n),
        subject: format!("Group {jid_n}"),
        description: None,
        settings: GroupSettings::default(),
        created_at: Timestamp::from_millis(created_at),
        updated_at: Timestamp::from_millis(created_at),
        left_at: None,
    }
}

async fn all_pages(store: &dyn Store, instance_id: Option<InstanceId>, limit: u32) -> Vec<Vec<GroupRecord>> {
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list_groups(&GroupListQuery { instance_id, cursor, limit }).await.unwrap();
        pages.push(page.groups);
        match page.next_cursor {
            Some(next) => {
                assert!(convene_store::parse_group_cursor(&next), "the store's own cursor {next:?} is accepted");
                cursor = Some(next);
            }
            None => return pages,
        }
        assert!(pages.len() < 100, "pagination does not end");
    }
}

pub async fn api_keys_round_trip_and_are_counted(store: &dyn Store) {
    // Arrange
    let first = api_key("ci", "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8");
    let second = api_key("ops", "a665a45920422f9d417e4867efdc4fb8a04a1f3fff1fa07e998e86f7f7a27ae3");
    assert_eq!(store.count_api_keys().await.unwrap(), 0);

    // Act
    store.insert_api_key(&first).await.unwrap();
    store.insert_api_key(&second).await.unwrap();

    // Assert
    assert_eq!(store.find_api_key(&first.secret_hash).await.unwrap(), Some(first));
    assert_eq!(store.find_api_key(&second.secret_hash).await.unwrap(), Some(second));
    assert_eq!(store.find_api_key("no-such-hash").await.unwrap(), None);
    assert_eq!(store.count_api_keys().await.unwrap(), 2);
}

pub async fn instances_round_trip_with_and_without_a_phone(store: &dyn Store) {
    // Arrange
    let with_phone = instance(7_103_000_002, Some("+1 713 715 7533"));
    let without_phone = instance(7_103_000_001, None);

    // Act
    store.insert_instance(&with_phone).await.unwrap();
    store.insert_instance(&without_phone).await.unwrap();

    // Assert
    assert_eq!(store.get_instance(with_phone.id).await.unwrap(), with_phone);
    assert_eq!(store.get_instance(without_phone.id).await.unwrap(), without_phone);
    assert_eq!(store.list_instances().await.unwrap(), vec![without_phone, with_phone], "in creation order");
}

pub async fn groups_round_trip_with_every_field_set_and_unset(store: &dyn Store) {
    // Arrange: each flag set alone, every timer, and everything set at once, so swapped columns cannot pass.
    store.insert_instance(&instance(7_103_000_001, None)).await.unwrap();
    let timers = [Disappearing::Off, Disappearing::Day, Disappearing::Week, Disappearing::NinetyDays];
    let mut groups: Vec<GroupRecord> = (0..4)
        .map(|i| GroupRecord {
            settings: GroupSettings {
                announce_only: i == 1,
                locked_info: i == 2,
                join_approval: i == 3,
                disappearing_messages: timers[i],
            },
            ..group(7_103_000_001, i as u64, T0 + i as i64)
        })
        .collect();
    groups.push(GroupRecord {
        description: Some("Line one\nLine two — ünïcode".to_owned()),
        settings: GroupSettings {
            announce_only: true,
            locked_info: true,
            join_approval: true,
            disappearing_messages: Disappearing::Week,
        },
        updated_at: Timestamp::from_millis(T0 + 5_000),
        left_at: Some(Timestamp::from_millis(T0 + 9_000)),
        ..group(7_103_000_001, 99, T0 + 10)
    });
    groups.push(GroupRecord { description: Some(String::new()), ..group(7_103_000_001, 98, T0 + 11) });

    // Act
    for g in &groups {
        store.insert_group(g).await.unwrap();
    }

    // Assert
    for g in &groups {
        assert_eq!(&store.get_group(g.id).await.unwrap(), g);
    }
}

pub async fn a_duplicate_instance_id_is_a_conflict(store: &dyn Store) {
    // Arrange
    let first = instance(7_103_000_001, None);
    store.insert_instance(&first).await.unwrap();
    let again = InstanceRecord { name: "another".into(), ..instance(7_103_000_001, Some("+447700176576")) };

    // Act
    let result = store.insert_instance(&again).await;

    // Assert
    assert!(matches!(result, Err(DbError::Conflict)), "{result:?}");
    assert_eq!(store.get_instance(first.id).await.unwrap(), first, "the first record is untouched");
}

pub async fn a_duplicate_api_key_hash_is_a_conflict(store: &dyn Store) {
    // Arrange
    store.insert_api_key(&api_key("one", "same-hash")).await.unwrap();

    // Act
    let result = store.insert_api_key(&api_key("two", "same-hash")).await;

    // Assert
    assert!(matches!(result, Err(DbError::Conflict)), "{result:?}");
    assert_eq!(store.count_api_keys().await.unwrap(), 1);
}

pub async fn a_second_record_for_one_instance_and_jid_is_a_conflict(store: &dyn Store) {
    // Arrange
    store.insert_instance(&instance(7_103_000_001, None)).await.unwrap();
    store.insert_instance(&instance(7_103_000_002, None)).await.unwrap();
    store.insert_group(&group(7_103_000_001, 1, T0)).await.unwrap();

    // Act
    let same_instance = store.insert_group(&group(7_103_000_001, 1, T0 + 1)).await;
    let other_instance = store.insert_group(&group(7_103_000_002, 1, T0 + 2)).await;

    // Assert
    assert!(matches!(same_instance, Err(DbError::Conflict)), "{same_instance:?}");
    assert!(other_instance.is_ok(), "another instance may know the same group: {other_instance:?}");
}

pub async fn a_duplicate_group_id_is_a_conflict(store: &dyn Store) {
    // Arrange
    store.insert_instance(&instance(7_103_000_001, None)).await.unwrap();
    let first = group(7_103_000_001, 1, T0);
    store.insert_group(&first).await.unwrap();

    // Act
    let result = store.insert_group(&GroupRecord { id: first.id, ..group(7_103_000_001, 2, T0) }).await;

    // Assert
    assert!(matches!(result, Err(DbError::Conflict)), "{result:?}");
}

pub async fn missing_records_are_not_found(store: &dyn Store) {
    // Arrange
    let missing_instance = InstanceId(7_103_999_999);
    let missing_group = group(7_103_000_001, 1, T0);

    // Act
    let get_instance = store.get_instance(missing_instance).await;
    let delete_instance = store.delete_instance(missing_instance).await;
    let get_group = store.get_group(missing_group.id).await;
    let update_group = store.update_group(&missing_group).await;

    // Assert
    assert!(matches!(get_instance, Err(DbError::NotFound)), "{get_instance:?}");
    assert!(matches!(delete_instance, Err(DbError::NotFound)), "{delete_instance:?}");
    assert!(matches!(get_group, Err(DbError::NotFound)), "{get_group:?}");
    assert!(matches!(update_group, Err(DbError::NotFound)), "{update_group:?}");
}

pub async fn deleting_an_instance_deletes_its_groups_and_nothing_else(store: &dyn Store) {
    // Arrange
    store.insert_instance(&instance(7_103_000_001, None)).await.unwrap();
    let kept = instance(7_103_000_002, None);
    store.insert_instance(&kept).await.unwrap();
    let doomed = [group(7_103_000_001, 1, T0), group(7_103_000_001, 2, T0 + 1)];
    let survivor = group(7_103_000_002, 1, T0 + 2);
    for g in doomed.iter().chain([&survivor]) {
        store.insert_group(g).await.unwrap();
    }

    // Act
    store.delete_instance(InstanceId(7_103_000_001)).await.unwrap();

    // Assert
    assert!(matches!(store.get_instance(InstanceId(7_103_000_001)).await, Err(DbError::NotFound)));
    for g in &doomed {
        assert!(matches!(store.get_group(g.id).await, Err(DbError::NotFound)), "group {} survived", g.id);
    }
    assert!(store.find_groups_by_jid(&jid(1), None).await.unwrap() == vec![survivor.clone()]);
    assert_eq!(store.list_instances().await.unwrap(), vec![kept]);
    assert_eq!(store.get_group(survivor.id).await.unwrap(), survivor);
}

pub async fn updating_a_group_replaces_only_its_mutable_fields(store: &dyn Store) {
    // Arrange
    store.insert_instance(&instance(7_103_000_001, None)).await.unwrap();
    let original = GroupRecord { description: Some("old".into()), ..group(7_103_000_001, 1, T0) };
    store.insert_group(&original).await.unwrap();
    let changed = GroupRecord {
        subject: "Renamed".into(),
        description: None,
        settings: GroupSettings {
            announce_only: true,
            locked_info: false,
            join_approval: true,
            disappearing_messages: Disappearing::Day,
        },
        updated_at: Timestamp::from_millis(T0 + 60_000),
        left_at: Some(Timestamp::from_millis(T0 + 120_000)),
        ..original.clone()
    };
    // Fields outside the update's reach, changed too: they must be ignored.
    let attempt = GroupRecord { created_at: Timestamp::from_millis(T0 - 1), jid: jid(2), ..changed.clone() };

    // Act
    store.update_group(&attempt).await.unwrap();

    // Assert
    assert_eq!(store.get_group(original.id).await.unwrap(), changed);
}

pub async fn groups_are_found_by_jid_on_every_instance_or_on_one(store: &dyn Store) {
    // Arrange
    store.insert_instance(&instance(7_103_000_001, None)).await.unwrap();
    store.insert_instance(&instance(7_103_000_002, None)).await.unwrap();
    let on_second = group(7_103_000_002, 1, T0);
    let on_first = group(7_103_000_001, 1, T0 + 5);
    let unrelated = group(7_103_000_001, 2, T0 + 1);
    for g in [&on_first, &on_second, &unrelated] {
        store.insert_group(g).await.unwrap();
    }

    // Act
    let everywhere = store.find_groups_by_jid(&jid(1), None).await.unwrap();
    let first_only = store.find_groups_by_jid(&jid(1), Some(InstanceId(7_103_000_001))).await.unwrap();
    let unknown = store.find_groups_by_jid(&jid(3), None).await.unwrap();

    // Assert
    assert_eq!(everywhere, vec![on_second, on_first.clone()], "in creation order");
    assert_eq!(first_only, vec![on_first]);
    assert!(unknown.is_empty());
}

pub async fn seven_groups_in_pages_of_three_come_as_three_three_and_one(store: &dyn Store) {
    // Arrange: some groups share a creation time, so the id must break ties.
    store.insert_instance(&instance(7_103_000_001, None)).await.unwrap();
    let times = [T0 + 3, T0, T0 + 1, T0 + 1, T0 + 1, T0 + 2, T0 + 1];
    let mut groups: Vec<GroupRecord> =
        times.iter().enumerate().map(|(i, &t)| group(7_103_000_001, i as u64, t)).collect();
    for g in &groups {
        store.insert_group(g).await.unwrap();
    }
    groups.sort_by_key(|g| (g.created_at, g.id.0.hyphenated().to_string()));

    // Act
    let pages = all_pages(store, None, 3).await;

    // Assert
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    assert_eq!(pages.concat(), groups, "every group once, in (created_at, id) order");
}

pub async fn a_last_page_that_is_exactly_full_has_no_next_cursor(store: &dyn Store) {
    // Arrange
    store.insert_instance(&instance(7_103_000_001, None)).await.unwrap();
    for i in 0..6 {
        store.insert_group(&group(7_103_000_001, i, T0 + i as i64)).await.unwrap();
    }

    // Act
    let pages = all_pages(store, None, 3).await;

    // Assert
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3]);
}

pub async fn listing_by_instance_pages_through_that_instances_groups_only(store: &dyn Store) {
    // Arrange: two instances' groups interleaved in time.
    store.insert_instance(&instance(7_103_000_001, None)).await.unwrap();
    store.insert_instance(&instance(7_103_000_002, None)).await.unwrap();
    let mut mine = Vec::new();
    for i in 0..10 {
        let owner = if i % 2 == 0 { 7_103_000_001 } else { 7_103_000_002 };
        let g = group(owner, i, T0 + i as i64);
        store.insert_group(&g).await.unwrap();
        if owner == 7_103_000_001 {
            mine.push(g);
        }
    }

    // Act
    let pages = all_pages(store, Some(InstanceId(7_103_000_001)), 2).await;

    // Assert
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    assert_eq!(pages.concat(), mine);
}

pub async fn listing_with_no_groups_gives_one_empty_page(store: &dyn Store) {
    // Act
    let page = store.list_groups(&GroupListQuery { limit: 10, ..Default::default() }).await.unwrap();

    // Assert
    assert!(page.groups.is_empty());
    assert_eq!(page.next_cursor, None);
}

pub async fn a_zero_limit_is_read_as_one(store: &dyn Store) {
    // Arrange
    store.insert_instance(&instance(7_103_000_001, None)).await.unwrap();
    for i in 0..2 {
        store.insert_group(&group(7_103_000_001, i, T0 + i as i64)).await.unwrap();
    }

    // Act
    let pages = all_pages(store, None, 0).await;

    // Assert
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1]);
}

pub async fn a_malformed_cursor_is_refused(store: &dyn Store) {
    // Arrange
    let query = GroupListQuery { cursor: Some("page-2".into()), limit: 10, ..Default::default() };

    // Act
    let result = store.list_groups(&query).await;

    // Assert
    match result {
        Err(DbError::Other(e)) => assert_eq!(e.to_string(), "invalid cursor"),
        other => panic!("expected an invalid-cursor error, got {other:?}"),
    }
    assert!(!convene_store::parse_group_cursor("page-2"));
}
