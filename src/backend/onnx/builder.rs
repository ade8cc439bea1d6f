//! A small ONNX graph builder over onnx-protobuf: nodes, attributes, initializers, constants.
//!
//! Every node gets a readable name that says where it comes from (`n5.row3.gates`); a
//! single-output node's output value carries the same name, so a value in Netron or an ORT
//! error message leads straight back to the IR node and step that made it. Shape constants
//! (the int64 inputs of Reshape/Pad/Slice/Split in opset 21) are shared initializers, made
//! once per distinct value.

use onnx_protobuf::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, NodeProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use std::collections::{HashMap, HashSet};

/// A dimension of a graph input/output type.
#[derive(Clone, Debug)]
pub enum Dim {
    Fixed(usize),
    Symbolic(&'static str),
}

/// The ONNX element type enum value of float32 / int64 (and bool, for `Where`).
pub const FLOAT: i32 = DataType::FLOAT as i32;
pub const INT64: i32 = DataType::INT64 as i32;
const BOOL: i32 = DataType::BOOL as i32;

/// Collects nodes and initializers in emission order (which the callers keep topological).
pub struct Builder {
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    /// Names already used by a node or a value; a repeat is an exporter bug, reported at the end.
    names: HashSet<String>,
    pub duplicate: Option<String>,
    consts: HashMap<String, String>,
    /// Doc string given to the nodes emitted until it changes (the IR node being lowered).
    pub doc: String,
}

impl Builder {
    pub fn new() -> Builder {
        Builder {
            nodes: Vec::new(),
            initializers: Vec::new(),
            names: HashSet::new(),
            duplicate: None,
            consts: HashMap::new(),
            doc: String::new(),
        }
    }

    fn claim(&mut self, name: &str) {
        if !self.names.insert(name.to_string()) && self.duplicate.is_none() {
            self.duplicate = Some(name.to_string());
        }
    }

    /// Emits a node named `name` whose outputs are `outputs`; returns nothing (the caller
    /// knows the output names).
    pub fn node_multi(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        outputs: &[String],
        attrs: Vec<AttributeProto>,
    ) {
        self.claim(&format!("node:{name}"));
        for o in outputs {
            self.claim(o);
        }
        let mut n = NodeProto::new();
        n.op_type = op.to_string();
        n.name = name.to_string();
        n.input = inputs.iter().map(|s| s.to_string()).collect();
        n.output = outputs.to_vec();
        n.attribute = attrs;
        n.doc_string = self.doc.clone();
        self.nodes.push(n);
    }

    /// Emits a single-output node whose output value is named like the node; returns it.
    pub fn op(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> String {
        self.op_to(op, name, inputs, name, attrs)
    }

    /// Emits a single-output node with an explicitly named output value.
    pub fn op_to(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        output: &str,
        attrs: Vec<AttributeProto>,
    ) -> String {
        self.node_multi(op, name, inputs, &[output.to_string()], attrs);
        output.to_string()
    }

    /// Emits a node with several outputs named `{name}.{suffix}`; returns them in order.
    pub fn op_n(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        suffixes: &[String],
        attrs: Vec<AttributeProto>,
    ) -> Vec<String> {
        let outs: Vec<String> = suffixes.iter().map(|s| format!("{name}.{s}")).collect();
        self.node_multi(op, name, inputs, &outs, attrs);
        outs
    }

    /// Adds a float32 initializer (stored as raw little-endian bytes, the compact encoding).
    pub fn init_f32(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        self.claim(name);
        let mut t = TensorProto::new();
        t.name = name.to_string();
        t.data_type = FLOAT;
        t.dims = dims.iter().map(|&d| d as i64).collect();
        t.raw_data = f32_bytes(data);
        self.initializers.push(t);
        name.to_string()
    }

    /// A shared 1-D int64 constant (shapes, pads, axes, starts, ...).
    pub fn i64s(&mut self, values: &[i64]) -> String {
        let body: Vec<String> = values
            .iter()
            .map(|v| {
                if *v < 0 {
                    format!("m{}", v.unsigned_abs())
                } else {
                    v.to_string()
                }
            })
            .collect();
        self.shared(format!("const.i64.{}", body.join("_")), |t| {
            t.data_type = INT64;
            t.dims = vec![values.len() as i64];
            t.int64_data = values.to_vec();
        })
    }

    /// The initializer named `key`, made by `fill` the first time and shared after.
    fn shared(&mut self, key: String, fill: impl FnOnce(&mut TensorProto)) -> String {
        if let Some(n) = self.consts.get(&key) {
            return n.clone();
        }
        self.claim(&key);
        let mut t = TensorProto::new();
        t.name = key.clone();
        fill(&mut t);
        self.initializers.push(t);
        self.consts.insert(key.clone(), key.clone());
        key
    }

    /// A named int64 tensor (index tables: too long to name by value).
    pub fn i64_tensor(&mut self, name: &str, dims: &[usize], values: &[i64]) -> String {
        self.claim(name);
        let mut t = TensorProto::new();
        t.name = name.to_string();
        t.data_type = INT64;
        t.dims = dims.iter().map(|&d| d as i64).collect();
        t.int64_data = values.to_vec();
        self.initializers.push(t);
        name.to_string()
    }

    /// A shared 0-D float32 constant.
    pub fn f32_scalar(&mut self, value: f32) -> String {
        self.shared(format!("const.f32.{value:?}"), |t| {
            t.data_type = FLOAT;
            t.float_data = vec![value];
        })
    }

    /// A shared 1-element bool constant (a `Where` condition).
    pub fn bool1(&mut self, value: bool) -> String {
        self.shared(format!("const.bool.{value}"), |t| {
            t.data_type = BOOL;
            t.dims = vec![1];
            t.int32_data = vec![i32::from(value)];
        })
    }
}

/// Little-endian bytes of f32 values (ONNX raw_data is always little-endian).
#[cfg(target_endian = "little")]
fn f32_bytes(data: &[f32]) -> Vec<u8> {
    // SAFETY: any f32 is 4 initialised bytes, u8 has no alignment requirement, and on a
    // little-endian target the in-memory bytes are the little-endian encoding. One memcpy
    // instead of a per-value loop matters for models of tens of millions of parameters.
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data)) }
        .to_vec()
}

#[cfg(not(target_endian = "little"))]
fn f32_bytes(data: &[f32]) -> Vec<u8> {
    data.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn attr_int(name: &str, v: i64) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.to_string();
    a.type_ = AttributeType::INT.into();
    a.i = v;
    a
}

pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.to_string();
    a.type_ = AttributeType::INTS.into();
    a.ints = v.to_vec();
    a
}

pub fn attr_str(name: &str, v: &str) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.to_string();
    a.type_ = AttributeType::STRING.into();
    a.s = v.as_bytes().to_vec();
    a
}

/// A graph input/output description with its element type, shape and documentation.
pub fn value_info(name: &str, elem: i32, dims: &[Dim], doc: &str) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    for d in dims {
        let mut dim = tensor_shape_proto::Dimension::new();
        match d {
            Dim::Fixed(v) => dim.set_dim_value(*v as i64),
            Dim::Symbolic(s) => dim.set_dim_param(s.to_string()),
        }
        shape.dim.push(dim);
    }
    let mut tt = type_proto::Tensor::new();
    tt.elem_type = elem;
    tt.shape = Some(shape).into();
    let mut tp = TypeProto::new();
    tp.set_tensor_type(tt);
    let mut v = ValueInfoProto::new();
    v.name = name.to_string();
    v.type_ = Some(tp).into();
    v.doc_string = doc.to_string();
    v
}

/// Typed shorthands for the ops the exporter uses (opset 21 signatures: sizes as inputs).
impl Builder {
    /// Conv with explicit `pads = [top, left, bottom, right]` (never auto_pad, which
    /// would put the extra row of an even kernel at the bottom).
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        &mut self,
        name: &str,
        x: &str,
        w: &str,
        bias: Option<&str>,
        kernel: &[usize],
        pads: &[usize],
        group: usize,
    ) -> String {
        let mut inputs = vec![x, w];
        if let Some(b) = bias {
            inputs.push(b);
        }
        let k: Vec<i64> = kernel.iter().map(|&v| v as i64).collect();
        let p: Vec<i64> = pads.iter().map(|&v| v as i64).collect();
        let mut attrs = vec![attr_ints("kernel_shape", &k), attr_ints("pads", &p)];
        if group != 1 {
            attrs.push(attr_int("group", group as i64));
        }
        self.op("Conv", name, &inputs, attrs)
    }

    pub fn unary(&mut self, op: &str, name: &str, x: &str) -> String {
        self.op(op, name, &[x], vec![])
    }

    pub fn binary(&mut self, op: &str, name: &str, a: &str, b: &str) -> String {
        self.op(op, name, &[a, b], vec![])
    }

    /// Reshape to `shape` (0 copies the input's dimension: how the dynamic batch is kept).
    pub fn reshape(&mut self, name: &str, x: &str, shape: &[i64]) -> String {
        let s = self.i64s(shape);
        self.op("Reshape", name, &[x, &s], vec![])
    }

    /// Reshape whose output value is named `out`.
    pub fn reshape_to(&mut self, name: &str, x: &str, shape: &[i64], out: &str) -> String {
        let s = self.i64s(shape);
        self.op_to("Reshape", name, &[x, &s], out, vec![])
    }

    pub fn slice(
        &mut self,
        name: &str,
        x: &str,
        starts: &[i64],
        ends: &[i64],
        axes: &[i64],
        steps: &[i64],
    ) -> String {
        let (s, e, a, st) = (
            self.i64s(starts),
            self.i64s(ends),
            self.i64s(axes),
            self.i64s(steps),
        );
        self.op("Slice", name, &[x, &s, &e, &a, &st], vec![])
    }

    /// Zero padding; `pads` is ONNX's `[begin per axis..., end per axis...]`.
    pub fn pad(&mut self, name: &str, x: &str, pads: &[i64]) -> String {
        let p = self.i64s(pads);
        self.op("Pad", name, &[x, &p], vec![])
    }

    /// Split along `axis` into the given sizes; outputs are `{name}.{suffix}`.
    pub fn split(
        &mut self,
        name: &str,
        x: &str,
        axis: i64,
        sizes: &[usize],
        suffixes: &[String],
    ) -> Vec<String> {
        let s: Vec<i64> = sizes.iter().map(|&v| v as i64).collect();
        let s = self.i64s(&s);
        self.op_n(
            "Split",
            name,
            &[x, &s],
            suffixes,
            vec![attr_int("axis", axis)],
        )
    }

    pub fn transpose(&mut self, name: &str, x: &str, perm: &[i64]) -> String {
        self.op("Transpose", name, &[x], vec![attr_ints("perm", perm)])
    }

    pub fn concat(&mut self, name: &str, xs: &[String], axis: i64) -> String {
        let refs: Vec<&str> = xs.iter().map(|s| s.as_str()).collect();
        self.op("Concat", name, &refs, vec![attr_int("axis", axis)])
    }
}
