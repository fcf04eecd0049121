-- segbridge.lua: tells the segbridge bridge when a series has finished
-- arriving in Orthanc, so it can be segmented.
--
-- Load it with Orthanc's "LuaScripts" setting. Settings, from the "Segbridge"
-- section of Orthanc's configuration, else from the environment:
--
--   Url         SEGBRIDGE_URL            bridge base URL (default http://127.0.0.1:8080)
--   Token       SEGBRIDGE_WEBHOOK_TOKEN  bearer token the bridge expects (required)
--   Modalities  SEGBRIDGE_MODALITIES     modalities to send, comma separated (default MR)
--
-- Orthanc runs Lua callbacks one at a time and its REST API waits while a
-- callback is in HttpPost, so this script only posts and returns: the bridge
-- answers at once (202) and does the work later. A post that fails is logged
-- and not retried here: the bridge's reconciler finds the series in Orthanc's
-- /changes feed.
--
-- Orthanc's HttpPost does not raise an error when the post fails, so pcall
-- alone never sees a failure: HttpPost returns nil when the bridge cannot be
-- reached or does not answer within HttpTimeout, and an empty string when it
-- answers with an HTTP error such as 401 (a wrong token; Orthanc logs the
-- status on the line before). The bridge names the series in every answer
-- that takes the event (202 queued, 200 skipped), so the script checks for
-- that. Its messages name the series and the URL, never the token.

local function setting(name, env, default)
  local cfg = GetOrthancConfiguration()
  local section = cfg and cfg["Segbridge"]
  local v = section and section[name]
  if v == nil or v == "" then
    v = os.getenv(env)
  end
  if v == nil or v == "" then
    v = default
  end
  return v
end

local function modalities()
  local v = setting("Modalities", "SEGBRIDGE_MODALITIES", "MR")
  local set = {}
  if type(v) == "table" then
    for _, m in ipairs(v) do set[string.upper(m)] = true end
  else
    for m in string.gmatch(v, "[^,%s]+") do set[string.upper(m)] = true end
  end
  return set
end

function OnStableSeries(seriesId, tags, metadata)
  local modality = string.upper(tags["Modality"] or "")
  -- Our own output must never start a job.
  if modality == "SEG" then
    return
  end
  if not modalities()[modality] then
    return
  end
  local token = setting("Token", "SEGBRIDGE_WEBHOOK_TOKEN", nil)
  if token == nil then
    print("segbridge: no webhook token (Segbridge.Token or SEGBRIDGE_WEBHOOK_TOKEN): series " .. seriesId .. " not sent")
    return
  end
  local url = string.gsub(setting("Url", "SEGBRIDGE_URL", "http://127.0.0.1:8080"), "/+$", "")
  -- The instance count lets the bridge see a series that grew after its job
  -- was done (the rest arrived after Orthanc had called it stable).
  local event = { event = "StableSeries", series_id = seriesId, tags = tags }
  local got, series = pcall(function() return ParseJson(RestApiGet("/series/" .. seriesId)) end)
  if got and type(series) == "table" and type(series["Instances"]) == "table" then
    event["instances"] = #series["Instances"]
  end
  local body = DumpJson(event, true)
  local endpoint = url .. "/v1/events/orthanc"
  local ok, answer = pcall(HttpPost, endpoint, body, {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
  })
  local problem
  if not ok then
    problem = tostring(answer)
  elseif answer == nil then
    problem = "the bridge is unreachable or did not answer within Orthanc's HttpTimeout"
  elseif answer == "" then
    problem = "the bridge answered with an HTTP error (its status is on Orthanc's log line above;" ..
      " 401: Segbridge.Token is not the bridge's SEGBRIDGE_WEBHOOK_TOKEN)"
  else
    local parsed, reply = pcall(ParseJson, answer)
    if not parsed or type(reply) ~= "table" or reply["series_id"] ~= seriesId then
      problem = "unexpected answer: " .. string.sub(answer, 1, 200)
    end
  end
  if problem ~= nil then
    print("segbridge: could not notify " .. endpoint .. " of series " .. seriesId .. ": " .. problem ..
      "; the bridge's reconciler (when on) queues it from Orthanc's /changes")
  end
end
