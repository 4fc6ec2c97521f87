extends Control
## Generates an image with a comfyui-mcp template through the server's plain HTTP API and
## shows it: POST /api, poll GET /api/jobs/{prompt_id} until the job ends, GET the PNG from
## /api/images/{prompt_id}/{filename}, load it into an ImageTexture on a TextureRect.
##
## Run the server with `comfyui-mcp serve --http 127.0.0.1:8765` (and set TOKEN below to its
## COMFYUI_MCP_HTTP_TOKEN if it has one). Errors come back as
## {"error": {"kind": ..., "message": ...}} with a 4xx/5xx status and are printed.

const SERVER_URL := "http://127.0.0.1:8765"
const TOKEN := ""
const ROUTE_CALL := "/api"
const ROUTE_JOB := "/api/jobs/{prompt_id}"
const ROUTE_IMAGE := "/api/images/{prompt_id}/{filename}"
const POLL_SECONDS := 1.0
const MAX_POLLS := 600
const TERMINAL := ["completed", "failed", "cancelled"]

@export var template_id := "item-icon"
@export var prompt := "a glowing blue potion bottle, game item icon"
@export var image_size := 512

var _http: HTTPRequest
var _texture_rect: TextureRect


func _ready() -> void:
	_http = HTTPRequest.new()
	add_child(_http)
	_texture_rect = TextureRect.new()
	_texture_rect.set_anchors_preset(Control.PRESET_FULL_RECT)
	_texture_rect.expand_mode = TextureRect.EXPAND_IGNORE_SIZE
	_texture_rect.stretch_mode = TextureRect.STRETCH_KEEP_ASPECT_CENTERED
	add_child(_texture_rect)
	generate(template_id, prompt)


## Queues a job, waits for it, and shows its first image.
func generate(template: String, text: String) -> void:
	var body := {
		"tool": "generate_image",
		"params": {"template": template, "prompt": text, "width": image_size, "height": image_size},
	}
	var queued = await _request_json(HTTPClient.METHOD_POST, ROUTE_CALL, body)
	if queued == null:
		return
	var prompt_id: String = queued["prompt_id"]
	print("queued job ", prompt_id)
	var job = queued
	for i in MAX_POLLS:
		job = await _request_json(HTTPClient.METHOD_GET, ROUTE_JOB.format({"prompt_id": prompt_id.uri_encode()}))
		if job == null:
			return
		if job["state"] in TERMINAL:
			break
		print("job %s: %s, %d%%" % [prompt_id, job["state"], int(job["progress"] * 100)])
		await get_tree().create_timer(POLL_SECONDS).timeout
	if job["state"] != "completed":
		push_error("job %s ended %s: %s" % [prompt_id, job["state"], job.get("error", {})])
		return
	var filename: String = job["images"][0]["filename"]
	var path := ROUTE_IMAGE.format({"prompt_id": prompt_id.uri_encode(), "filename": filename.uri_encode()})
	var png = await _request_bytes(path)
	if png == null:
		return
	var image := Image.new()
	var err := image.load_png_from_buffer(png)
	if err != OK:
		push_error("the image is not a PNG: %s" % error_string(err))
		return
	_texture_rect.texture = ImageTexture.create_from_image(image)
	print("showing ", filename, " (", image.get_width(), "x", image.get_height(), ")")


func _headers() -> PackedStringArray:
	var headers := PackedStringArray(["Content-Type: application/json", "Accept: application/json"])
	if TOKEN != "":
		headers.append("Authorization: Bearer " + TOKEN)
	return headers


## One request; the `request_completed` arguments [result, code, headers, body], or [] when it
## could not be sent.
func _send(method: HTTPClient.Method, path: String, body_text: String) -> Array:
	var err := _http.request(SERVER_URL + path, _headers(), method, body_text)
	if err != OK:
		push_error("could not send %s: %s" % [path, error_string(err)])
		return []
	return await _http.request_completed


## The body of a 200 answer, or null (the error is printed).
func _checked_body(path: String, response: Array):
	if response.is_empty():
		return null
	var result: int = response[0]
	var code: int = response[1]
	var body: PackedByteArray = response[3]
	if result != HTTPRequest.RESULT_SUCCESS:
		push_error("%s: the request failed (HTTPRequest result %d); is the server running?" % [path, result])
		return null
	if code != 200:
		var data = JSON.parse_string(body.get_string_from_utf8())
		if data is Dictionary and data.has("error"):
			push_error("%s -> HTTP %d %s: %s" % [path, code, data["error"]["kind"], data["error"]["message"]])
		else:
			push_error("%s -> HTTP %d" % [path, code])
		return null
	return body


func _request_json(method: HTTPClient.Method, path: String, body = null):
	var text := "" if body == null else JSON.stringify(body)
	var bytes = _checked_body(path, await _send(method, path, text))
	if bytes == null:
		return null
	return JSON.parse_string(bytes.get_string_from_utf8())


func _request_bytes(path: String):
	return _checked_body(path, await _send(HTTPClient.METHOD_GET, path, ""))
