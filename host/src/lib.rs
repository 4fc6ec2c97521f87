//! comfyui-mcp
