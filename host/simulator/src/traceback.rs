//! Python traceback frames as ComfyUI 0.3.75 reports them (`traceback.format_tb`).
//!
//! Frames recorded from the real server are reproduced verbatim; the few the recordings do
//! not show are written in the same form. Paths are relative (`ComfyUI/execution.py`), as in
//! the recordings, never a path of this machine.

/// One frame, with a caret line underlining `code` from the first occurrence of `from` to the
/// end of the line (Python 3.11's style for a call expression).
pub(crate) fn frame(file: &str, line: u32, func: &str, code: &str, from: Option<&str>) -> String {
    let mut out = format!("  File \"{file}\", line {line}, in {func}\n    {code}\n");
    if let Some(start) = from.and_then(|f| code.find(f)) {
        let len = code.chars().count() - code[..start].chars().count();
        out.push_str(&format!(
            "    {}{}\n",
            " ".repeat(code[..start].chars().count()),
            "^".repeat(len)
        ));
    }
    out
}

/// `validate_inputs` calling itself for a linked node (the frame that catches inner errors).
pub(crate) fn inner_validation_call() -> String {
    frame(
        "ComfyUI/execution.py",
        822,
        "validate_inputs",
        "r = await validate_inputs(prompt_id, prompt, o_id, validated)",
        Some("await"),
    )
}

/// `validate_prompt` calling `validate_inputs` for an output node.
pub(crate) fn validate_prompt_call() -> String {
    frame(
        "ComfyUI/execution.py",
        1024,
        "validate_prompt",
        "m = await validate_inputs(prompt_id, prompt, o, validated)",
        Some("await"),
    )
}

/// The lookup of a linked node that does not exist (`KeyError`).
pub(crate) fn linked_node_lookup() -> String {
    "  File \"ComfyUI/execution.py\", line 802, in validate_inputs\n    o_class_type = prompt[o_id]['class_type']\n                   ~~~~~~^^^^^^\n".to_string()
}

/// The lookup of a linked output slot that does not exist (`IndexError`).
pub(crate) fn linked_slot_lookup() -> String {
    "  File \"ComfyUI/execution.py\", line 804, in validate_inputs\n    received_type = r[val[1]]\n                    ~^^^^^^^^\n".to_string()
}

/// Reading a node's `inputs` (a node without them raises `KeyError: 'inputs'`).
pub(crate) fn node_inputs_lookup() -> String {
    "  File \"ComfyUI/execution.py\", line 769, in validate_inputs\n    inputs = prompt[unique_id]['inputs']\n             ~~~~~~~~~~~~~~~~~^^^^^^^^^^\n".to_string()
}

/// Reading one input value from a non-dict `inputs`.
pub(crate) fn input_value_lookup() -> String {
    "  File \"ComfyUI/execution.py\", line 796, in validate_inputs\n    val = inputs[x]\n          ~~~~~~^^^\n".to_string()
}

/// A min/max comparison between incompatible types.
pub(crate) fn limit_comparison() -> String {
    frame(
        "ComfyUI/execution.py",
        868,
        "validate_inputs",
        "if \"min\" in extra_info and val < extra_info[\"min\"]:",
        None,
    )
}

/// A validation recursion that never ends (a cycle in the graph).
pub(crate) fn recursion() -> String {
    frame(
        "ComfyUI/execution.py",
        758,
        "validate_inputs",
        "if unique_id in validated:",
        None,
    )
}

/// A node's own `VALIDATE_INPUTS` raising.
pub(crate) fn custom_validation() -> String {
    frame(
        "ComfyUI/execution.py",
        933,
        "validate_inputs",
        "ret = await _async_map_node_over_list(prompt_id, unique_id, obj_class, input_filtered, validate_function_name, hidden_inputs=hidden_inputs)",
        Some("await"),
    )
}

/// The frames every node function's exception passes through, outermost first.
pub(crate) fn execution_frames() -> Vec<String> {
    vec![
        frame(
            "ComfyUI/execution.py",
            510,
            "execute",
            "output_data, output_ui, has_subgraph, has_pending_tasks = await get_output_data(prompt_id, unique_id, obj, input_data_all, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)",
            Some("await"),
        ),
        frame(
            "ComfyUI/execution.py",
            324,
            "get_output_data",
            "return_values = await _async_map_node_over_list(prompt_id, unique_id, obj, input_data_all, obj.FUNCTION, allow_interrupt=True, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)",
            Some("await"),
        ),
        frame(
            "ComfyUI/execution.py",
            298,
            "_async_map_node_over_list",
            "await process_inputs(input_dict, i)",
            None,
        ),
        frame(
            "ComfyUI/execution.py",
            286,
            "process_inputs",
            "result = f(**inputs)",
            Some("f(**inputs)"),
        ),
    ]
}

/// `ImageToMask` indexing a channel the image does not have (as recorded).
pub(crate) fn image_to_mask() -> String {
    "  File \"ComfyUI/comfy_extras/nodes_mask.py\", line 137, in image_to_mask\n    mask = image[:, :, :, channels.index(channel)]\n           ~~~~~^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_frames_match_the_recordings() {
        assert_eq!(
            inner_validation_call(),
            "  File \"ComfyUI/execution.py\", line 822, in validate_inputs\n    r = await validate_inputs(prompt_id, prompt, o_id, validated)\n        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
        );
        assert_eq!(
            validate_prompt_call(),
            "  File \"ComfyUI/execution.py\", line 1024, in validate_prompt\n    m = await validate_inputs(prompt_id, prompt, o, validated)\n        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
        );
        let frames = execution_frames();
        assert_eq!(
            frames[3],
            "  File \"ComfyUI/execution.py\", line 286, in process_inputs\n    result = f(**inputs)\n             ^^^^^^^^^^^\n"
        );
        assert!(frames[0].contains(&format!("\n{}^^^", " ".repeat(62))));
    }
}
