//! Patterns used by grants: MQTT-style topic patterns and plugin name patterns.

mod name;
mod topic;

#[cfg(test)]
mod covers_tests;
#[cfg(test)]
mod topic_tests;

pub use name::{MAX_COMMAND_NAME, MAX_PLUGIN_NAME, NamePattern, validate_plugin_name};
pub use topic::{
    DEVICE_PLACEHOLDER, MAX_TOPIC_BYTES, MAX_TOPIC_LEVELS, TopicPattern, validate_topic,
};
