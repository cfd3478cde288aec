"""GLSL 3.30 programs of the renderer: textured and lit scene, shadow depth pass, and the sky.

Patterns are procedural (integer-hash value noise) and render the same on every run; a material may add a
photo layer (textures.py) that takes its first colour's place. Colours are linear RGB until `tonemap`,
shared by the scene and the sky so that fog fades surfaces into exactly the horizon colour.
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
in vec4 in_photo;
out vec3 v_world;
out vec3 v_normal;
out vec2 v_uv;
out vec3 v_color_a;
out vec3 v_color_b;
flat out vec2 v_pattern;
flat out vec4 v_photo;
void main() {
    v_world = in_position;
    v_normal = in_normal;
    v_uv = in_uv;
    v_color_a = in_color_a;
    v_color_b = in_color_b;
    v_pattern = in_pattern;
    v_photo = in_photo;
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
uniform float u_shadow_offset_m;    // receivers are looked up this far along their normal (against acne)
uniform float u_shadow_bias;        // and this much nearer the light, in shadow-map depth units
uniform sampler2DArray u_photos;
uniform bool u_have_photos;
in vec3 v_world;
in vec3 v_normal;
in vec2 v_uv;
in vec3 v_color_a;
in vec3 v_color_b;
flat in vec2 v_pattern;
flat in vec4 v_photo;     // layer (-1: none), tile size in metres, gain, offset
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

// The photo layer in linear RGB, its tiles mirrored so that neighbours meet without seams.
vec3 photo(vec2 uv_m) {
    vec2 p = uv_m / v_photo.y + v_photo.w * vec2(1.0, 1.618);
    vec2 folded = 1.0 - abs(1.0 - mod(p, 2.0));
    vec3 srgb = textureGrad(u_photos, vec3(folded, v_photo.x), dFdx(p), dFdy(p)).rgb;
    return pow(srgb, vec3(2.2)) * v_photo.z;
}

// Boards one unit wide along uv.x, each a shade between colours a and b, with grain, seams and board ends.
vec3 planks(vec2 uv, vec3 a, vec3 b) {
    float board = floor(uv.y);
    float along = uv.x / 8.0 + hash(ivec3(int(board), 3, 1));    // boards 8 widths long, staggered
    float pick = hash(ivec3(int(board), int(floor(along)), 11));
    vec3 wood = mix(a, b, pick);
    float grain_lines = 0.85 + 0.3 * value_noise(vec3(uv.x * 0.6, uv.y * 12.0, pick * 50.0));
    float seams = smoothstep(0.0, 0.06, fract(uv.y)) * smoothstep(0.0, 0.01, fract(along));
    float resolved = clamp(1.5 - 8.0 * length(fwidth(uv)), 0.0, 1.0);
    return wood * mix(0.9, grain_lines * (0.6 + 0.4 * seams), resolved);
}

vec3 albedo(vec3 normal) {
    int pattern = int(v_pattern.x + 0.5);
    float scale_m = v_pattern.y;
    vec2 uv = v_uv / scale_m;
    // a photo replaces colour a; where colour b would fill whole areas (tiles, boards), a darker photo does
    bool photographic = u_have_photos && v_photo.x > -0.5;
    vec3 a = photographic ? photo(v_uv) : v_color_a;
    vec3 b = photographic ? 0.7 * a : v_color_b;
    float patches = 0.8 + 0.4 * value_noise(vec3(uv * 0.08, 2.5));
    float detail = (1.0 + grain(uv * 5.0, 0.4) + grain(uv * 19.0, 0.35) + grain(uv * 61.0, 0.3)) * patches;
    if (pattern == 1) {
        return mix(a, b, checker(uv)) * detail;
    }
    if (pattern == 2) {
        if (normal.z > 0.5) return a * 0.6 * detail;
        vec2 cell = fract(uv);
        bool window = cell.x > 0.2 && cell.x < 0.8 && cell.y > 0.3 && cell.y < 0.8 && uv.y > 0.9;
        return window ? v_color_b * (0.5 + hash(ivec3(floor(uv), 7))) : a * detail;
    }
    if (pattern == 3) {
        bool line = abs(v_uv.y) < 0.08 && fract(v_uv.x / 6.0) < 0.5;
        return line ? v_color_b : a * (0.7 + 0.6 * fbm(vec3(uv, 1.3))) * detail;
    }
    if (pattern == 4) {
        return planks(uv, a, b) * patches;
    }
    if (photographic) return a * patches;
    return mix(a, b, smoothstep(0.3, 0.7, fbm(vec3(uv, 0.0)))) * detail;
}

void main() {
    vec3 to_camera = u_camera_m - v_world;
    vec3 normal = normalize(v_normal);
    if (dot(normal, to_camera) < 0.0) normal = -normal;
    float lit = 1.0;
    if (u_shadows) {
        vec4 light = u_light_from_world * vec4(v_world + u_shadow_offset_m * normal, 1.0);
        vec3 coord = light.xyz * 0.5 + 0.5;
        if (all(greaterThan(coord, vec3(0.0))) && all(lessThan(coord, vec3(1.0))))
            lit = texture(u_shadow_map, vec3(coord.xy, coord.z - u_shadow_bias));
    }
    // contact darkening: vertical faces (whose uv.y is the height above their base) darken near the bottom
    float occlusion = abs(normal.z) < 0.5 ? mix(0.6, 1.0, smoothstep(0.0, 0.35, v_uv.y)) : 1.0;
    float sun = max(dot(normal, u_sun_direction), 0.0) * lit;
    vec3 ambient = u_ambient_rgb * (0.65 + 0.35 * normal.z) * occlusion;
    vec3 color = albedo(normal) * (u_sun_rgb * sun + ambient);
    float fog = 1.0 - exp(-length(to_camera) / u_fog_distance_m);
    f_color = vec4(tonemap(mix(color, u_fog_rgb, fog)), 1.0);
}
"""

SHADOW_VERTEX = """
#version 330
uniform mat4 u_light_from_world;
in vec3 in_position;
in float in_casts_shadow;
void main() {
    // surfaces that cast no shadow go behind the far plane, out of the shadow map
    gl_Position = in_casts_shadow > 0.5 ? u_light_from_world * vec4(in_position, 1.0) : vec4(0.0, 0.0, 2.0, 1.0);
}
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
