"""GLSL 3.30 programs of the renderer: textured and lit scene, shadow depth pass, and the sky.

Textures are procedural (integer-hash value noise), so a scene needs no image assets and renders the
same on every run. Colours are linear RGB until `tonemap`, shared by the scene and the sky so that fog
fades surfaces into exactly the horizon colour.
"""

_NOISE = """
uint hash_bits(ivec3 p) {
    uvec3 v = uvec3(p);
    uint h = (v.x * 0x8da6b343u) ^ (v.y * 0xd8163841u) ^ (v.z * 0xcb1ab31fu);
    h ^= h >> 16; h *= 0x7feb352du; h ^= h >> 15; h *= 0x846ca68bu; h ^= h >> 16;
    return h;
}
float hash(ivec3 p) { return float(hash_bits(p) & 0xffffffu) / 16777215.0; }
float value_noise(vec3 p) {
    vec3 cell = floor(p);
    vec3 f = p - cell;
    vec3 w = f * f * (3.0 - 2.0 * f);
    ivec3 c = ivec3(cell);
    float x00 = mix(hash(c), hash(c + ivec3(1, 0, 0)), w.x);
    float x10 = mix(hash(c + ivec3(0, 1, 0)), hash(c + ivec3(1, 1, 0)), w.x);
    float x01 = mix(hash(c + ivec3(0, 0, 1)), hash(c + ivec3(1, 0, 1)), w.x);
    float x11 = mix(hash(c + ivec3(0, 1, 1)), hash(c + ivec3(1, 1, 1)), w.x);
    return mix(mix(x00, x10, w.y), mix(x01, x11, w.y), w.z);
}
float fbm(vec3 p) {
    float sum = 0.0, amplitude = 0.5;
    for (int octave = 0; octave < 4; ++octave) {
        sum += amplitude * value_noise(p);
        p = p * 2.03 + vec3(17.1, -3.7, 5.3);
        amplitude *= 0.5;
    }
    return sum / 0.9375;
}
uniform float u_exposure;
vec3 tonemap(vec3 linear_rgb) {
    return pow(1.0 - exp(-linear_rgb * u_exposure * 1.3), vec3(1.0 / 2.2));
}
"""

SCENE_VERTEX = """
#version 330
uniform mat4 u_clip_from_world;
in vec3 in_position;
in vec3 in_normal;
in vec2 in_uv;
in vec3 in_color_a;
in vec3 in_color_b;
in vec2 in_pattern;
out vec3 v_world;
out vec3 v_normal;
out vec2 v_uv;
out vec3 v_color_a;
out vec3 v_color_b;
flat out vec2 v_pattern;
void main() {
    v_world = in_position;
    v_normal = in_normal;
    v_uv = in_uv;
    v_color_a = in_color_a;
    v_color_b = in_color_b;
    v_pattern = in_pattern;
    gl_Position = u_clip_from_world * vec4(in_position, 1.0);
}
"""

SCENE_FRAGMENT = """
#version 330
""" + _NOISE + """
uniform vec3 u_camera_m;
uniform vec3 u_sun_direction;
uniform vec3 u_sun_rgb;
uniform vec3 u_ambient_rgb;
uniform vec3 u_fog_rgb;
uniform float u_fog_distance_m;
uniform bool u_shadows;
uniform mat4 u_light_from_world;
uniform sampler2DShadow u_shadow_map;
in vec3 v_world;
in vec3 v_normal;
in vec2 v_uv;
in vec3 v_color_a;
in vec3 v_color_b;
flat in vec2 v_pattern;
out vec4 f_color;

// Box-filtered checkerboard (0 or 1 per square), so distant tiles fade to grey instead of aliasing.
float checker(vec2 p) {
    vec2 w = max(abs(dFdx(p)), abs(dFdy(p))) + 1e-4;
    vec2 i = 2.0 * (abs(fract((p - 0.5 * w) * 0.5) - 0.5) - abs(fract((p + 0.5 * w) * 0.5) - 0.5)) / w;
    return 0.5 - 0.5 * i.x * i.y;
}

// Zero-mean value noise of the given amplitude that fades out once its cells get smaller than a pixel.
float grain(vec2 p, float amplitude) {
    float resolved = clamp(1.5 - 2.0 * length(fwidth(p)), 0.0, 1.0);
    return resolved * amplitude * (value_noise(vec3(p, 0.5)) - 0.5);
}

vec3 albedo(vec3 normal) {
    int pattern = int(v_pattern.x + 0.5);
    float scale_m = v_pattern.y;
    vec2 uv = v_uv / scale_m;
    float detail = (1.0 + grain(uv * 5.0, 0.4) + grain(uv * 19.0, 0.35) + grain(uv * 61.0, 0.3))
                 * (0.8 + 0.4 * value_noise(vec3(uv * 0.08, 2.5)));
    if (pattern == 1) {
        return mix(v_color_a, v_color_b, checker(uv)) * detail;
    }
    if (pattern == 2) {
        if (normal.z > 0.5) return v_color_a * 0.6 * detail;
        vec2 cell = fract(uv);
        bool window = cell.x > 0.2 && cell.x < 0.8 && cell.y > 0.3 && cell.y < 0.8 && uv.y > 0.9;
        return window ? v_color_b * (0.5 + hash(ivec3(floor(uv), 7))) : v_color_a * detail;
    }
    if (pattern == 3) {
        bool line = abs(v_uv.y) < 0.08 && fract(v_uv.x / 6.0) < 0.5;
        return line ? v_color_b : v_color_a * (0.7 + 0.6 * fbm(vec3(uv, 1.3))) * detail;
    }
    return mix(v_color_a, v_color_b, smoothstep(0.3, 0.7, fbm(vec3(uv, 0.0)))) * detail;
}

void main() {
    vec3 to_camera = u_camera_m - v_world;
    vec3 normal = normalize(v_normal);
    if (dot(normal, to_camera) < 0.0) normal = -normal;
    float lit = 1.0;
    if (u_shadows) {
        vec4 light = u_light_from_world * vec4(v_world + 0.15 * normal, 1.0);
        vec3 coord = light.xyz * 0.5 + 0.5;
        if (all(greaterThan(coord, vec3(0.0))) && all(lessThan(coord, vec3(1.0))))
            lit = texture(u_shadow_map, vec3(coord.xy, coord.z - 0.0003));
    }
    float sun = max(dot(normal, u_sun_direction), 0.0) * lit;
    vec3 ambient = u_ambient_rgb * (0.65 + 0.35 * normal.z);
    vec3 color = albedo(normal) * (u_sun_rgb * sun + ambient);
    float fog = 1.0 - exp(-length(to_camera) / u_fog_distance_m);
    f_color = vec4(tonemap(mix(color, u_fog_rgb, fog)), 1.0);
}
"""

SHADOW_VERTEX = """
#version 330
uniform mat4 u_light_from_world;
in vec3 in_position;
void main() { gl_Position = u_light_from_world * vec4(in_position, 1.0); }
"""

SHADOW_FRAGMENT = """
#version 330
void main() {}
"""

SKY_VERTEX = """
#version 330
out vec2 v_ndc;
void main() {
    v_ndc = vec2(gl_VertexID == 1 ? 3.0 : -1.0, gl_VertexID == 2 ? 3.0 : -1.0);
    gl_Position = vec4(v_ndc, 0.0, 1.0);
}
"""

SKY_FRAGMENT = """
#version 330
""" + _NOISE + """
uniform mat4 u_world_from_clip;
uniform vec3 u_camera_m;
uniform vec3 u_sun_direction;
uniform vec3 u_sun_rgb;
uniform vec3 u_zenith_rgb;
uniform vec3 u_horizon_rgb;
uniform float u_cloud_cover;
in vec2 v_ndc;
out vec4 f_color;
void main() {
    vec4 far_point = u_world_from_clip * vec4(v_ndc, 1.0, 1.0);
    vec3 direction = normalize(far_point.xyz / far_point.w - u_camera_m);
    float elevation = direction.z;
    vec3 sky = mix(u_horizon_rgb, u_zenith_rgb, sqrt(clamp(elevation, 0.0, 1.0)));
    float towards_sun = max(dot(direction, u_sun_direction), 0.0);
    sky += u_sun_rgb * (0.05 * pow(towards_sun, 8.0) + 3.0 * pow(towards_sun, 3000.0)) * (1.0 - u_cloud_cover);
    if (elevation > 0.0) {
        // clouds on a plane above the camera; their layout is keyed to the sun so each scene differs
        vec2 plane = direction.xy / (elevation + 0.08) * 0.8 + 97.0 * u_sun_direction.xy;
        float threshold = 0.7 - 0.45 * u_cloud_cover;
        float cloud = smoothstep(threshold, threshold + 0.15, fbm(vec3(plane, 0.0))) * smoothstep(0.0, 0.1, elevation);
        vec3 cloud_rgb = mix(u_horizon_rgb, vec3(1.0), 0.5) * (0.75 + 0.25 * fbm(vec3(plane * 3.0, 4.0)));
        sky = mix(sky, cloud_rgb, cloud);
    }
    f_color = vec4(tonemap(sky), 1.0);
}
"""
