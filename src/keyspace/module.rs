//! Module data carried without the module: a module type's values (RDB type 7) and its
//! MODULE_AUX records are self-describing sequences of items (integers, floats, strings),
//! so forksnap reads, keeps and writes them back without knowing what they mean. A
//! server that lacks the module refuses them at load: that is its choice.

/// One item of a module's serialized data (what `RedisModule_Save*` wrote).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModuleItem {
    /// `RedisModule_SaveSigned`.
    Signed(i64),
    /// `RedisModule_SaveUnsigned`.
    Unsigned(u64),
    /// `RedisModule_SaveFloat`, as its IEEE 754 bits (exact, NaNs included).
    Float(u32),
    /// `RedisModule_SaveDouble`, as its IEEE 754 bits.
    Double(u64),
    /// `RedisModule_SaveStringBuffer`.
    String(Box<[u8]>),
}

/// A value of a module type (a vector set, a JSON document, a graph, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleValue {
    /// The module type's id: 9 characters of name and a 10-bit encoding version.
    pub type_id: u64,
    /// Its data, in order.
    pub items: Vec<ModuleItem>,
}

/// The characters of a module type's name, in the order its id encodes them.
const NAME_CHARS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

impl ModuleValue {
    /// The module type's name (`vectorset`, `graphdata`, ...), from its id.
    pub fn type_name(&self) -> String {
        module_type_name(self.type_id)
    }

    /// The encoding version the module wrote with (the id's low 10 bits).
    pub fn encoding_version(&self) -> u16 {
        (self.type_id & 1023) as u16
    }
}

/// A module type's name from its id (the 54 bits above the encoding version, 6 per
/// character, first character highest).
pub(crate) fn module_type_name(id: u64) -> String {
    (0..9)
        .map(|i| NAME_CHARS[((id >> (10 + 6 * (8 - i))) & 63) as usize] as char)
        .collect()
}

/// A MODULE_AUX record: module data kept outside the keyspace (a search index's
/// definitions, ...), written before the databases (`when` 1) or after them (2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleAux {
    /// 1: before the keyspace (`REDISMODULE_AUX_BEFORE_RDB`); 2: after it.
    pub when: u64,
    /// The module type and its data.
    pub data: ModuleValue,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_decode_as_redis_encodes_them() {
        // Redis builds the id as: each character's index, 6 bits, first character
        // highest, then the encoding version in the low 10 bits.
        let encode = |name: &str, ver: u64| {
            let mut id = 0u64;
            for c in name.bytes() {
                id = (id << 6) | NAME_CHARS.iter().position(|&x| x == c).unwrap() as u64;
            }
            (id << 10) | ver
        };
        let v = ModuleValue {
            type_id: encode("vectorset", 3),
            items: vec![],
        };
        assert_eq!(v.type_name(), "vectorset");
        assert_eq!(v.encoding_version(), 3);
        assert_eq!(module_type_name(encode("graphdata", 17)), "graphdata");
        assert_eq!(module_type_name(encode("Ab-_09xyz", 0)), "Ab-_09xyz");
    }
}
