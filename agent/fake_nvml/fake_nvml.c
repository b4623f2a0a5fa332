/*
 * A fake libnvidia-ml.so.1 serving scripted GPUs, so that the real pynvml code
 * path (ctypes, structs, error codes) runs on machines without an NVIDIA GPU.
 * Used by the agent's tests and by `puewatch bench agent`.
 *
 *   gcc -O2 -fPIC -shared -Wl,-soname,libnvidia-ml.so.1 -o DIR/libnvidia-ml.so.1 fake_nvml.c
 *   LD_LIBRARY_PATH=DIR FAKE_NVML_CONFIG=script.txt python ...
 *
 * The script (re-read at every nvmlInit) has one directive per line; '#' starts a comment:
 *
 *   count N                      number of GPUs (default 1, at most 1024)
 *   driver VERSION               driver version string
 *   init_error CODE              nvmlInit fails with this NVML error code
 *   driver_down_from_s T         from T s after load the driver is gone: nvmlInit and every call fail ...
 *   driver_down_until_s T        ... until T s after load (default: forever); the driver is then
 *                                reloaded: every energy counter restarts from 0 at T
 *   driver_down_error CODE       the error meanwhile (default 9, NVML_ERROR_DRIVER_NOT_LOADED)
 *   gpu I|all KEY VALUE...       per-GPU settings:
 *     name TEXT                  product name (rest of the line)
 *     arch N                     nvmlDeviceArchitecture_t (7 Ampere, 9 Hopper, ...)
 *     pci_device_id HEX          e.g. 0x233010de
 *     power_mw N                 base power; readings add step_mw * ((t*10) % 5)
 *     step_mw N                  power variation (default 1000)
 *     energy_start_mj N          energy counter at start
 *     unsupported FEATURE        -> NVML_ERROR_NOT_SUPPORTED; FEATURE is one of
 *                                power_average power_instant power_usage energy utilization memory
 *                                temperature clocks power_limit clock_events processes serial architecture
 *                                process_utilization field_values
 *     fail FEATURE CODE [N]      the next N calls of FEATURE (default 1; -1: every call) fail with NVML error
 *                                CODE (e.g. 999 UNKNOWN, 10 TIMEOUT, 4 NO_PERMISSION): a transient fault
 *                                (counted from each nvmlInit, when the script is read again)
 *     lost_from_s T              from T s after load, every call on this GPU returns GPU_IS_LOST ...
 *     lost_until_s T             ... until T s after load (default: forever)
 *     energy_reset_at_s T        at T s the energy counter restarts from 0 (a driver reload)
 *     energy_jump_at_s T MJ      from T s the energy counter reads MJ more (a counter that jumps)
 *     power_limit_mw N           the enforced power limit (default 700000)
 *     power_limit_at_s T N       from T s the enforced power limit is N mW (a cap raised or lowered)
 *     replaced_at_s T            at T s the board is another (a swap while it was lost): its UUID changes
 *                                and its energy counter is its own, from 0 at T
 *     procs N                    number of compute processes (pids 1000+I*10+k)
 *
 * Energy is exact: energy_start_mj + power_mw * t (mJ = mW * s), t in seconds since load.
 * With FAKE_NVML_PIDS=FILE, the compute processes are those FILE lists instead of `procs`: one
 * "GPU PID [SM_UTIL_PCT]" per line, re-read at every call, so a test can put the real PIDs of the
 * jobs it starts on a GPU while the reader runs; nvmlDeviceGetProcessUtilization answers SM_UTIL_PCT
 * for the PIDs that give one (NOT_FOUND when none on that GPU does, as NVML does without samples).
 *
 * With FAKE_NVML_LOG=FILE, every energy reading returned is appended as "E <gpu> <mJ>\n"
 * (one write(2) each, so it survives a SIGKILL of the reader): the test's ground truth.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef int nvmlReturn_t;
#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_DRIVER_NOT_LOADED 9
#define NVML_ERROR_GPU_IS_LOST 15

#define MAX_GPUS 1024

enum feature {
    F_POWER_AVERAGE, F_POWER_INSTANT, F_POWER_USAGE, F_ENERGY, F_UTILIZATION, F_MEMORY,
    F_TEMPERATURE, F_CLOCKS, F_POWER_LIMIT, F_CLOCK_EVENTS, F_PROCESSES, F_SERIAL, F_ARCH, F_PROCESS_UTILIZATION, F_FIELD_VALUES, F_COUNT
};
static const char *feature_names[F_COUNT] = {
    "power_average", "power_instant", "power_usage", "energy", "utilization", "memory",
    "temperature", "clocks", "power_limit", "clock_events", "processes", "serial", "architecture",
    "process_utilization", "field_values"
};

struct gpu {
    int index;
    char name[96];
    unsigned arch;
    unsigned pci_device_id;
    unsigned long long power_mw;
    unsigned long long step_mw;
    unsigned long long energy_start_mj;
    int unsupported[F_COUNT];
    int fail_code[F_COUNT];
    long fail_left[F_COUNT];
    double lost_from_s, lost_until_s;
    double energy_reset_at_s;
    double energy_jump_at_s;
    unsigned long long energy_jump_mj;
    unsigned power_limit_mw;
    double power_limit_at_s;
    unsigned power_limit_later_mw;
    double replaced_at_s;
    unsigned procs;
};

static struct gpu gpus[MAX_GPUS];
static unsigned gpu_count = 1;
static char driver_version[80] = "555.42.06";
static int init_error = 0;
static double driver_down_from_s = -1, driver_down_until_s = 1e300;
static int driver_down_error = NVML_ERROR_DRIVER_NOT_LOADED;
static int initialised = 0;
static struct timespec t0;
static int log_fd = -1;

__attribute__((constructor)) static void fake_nvml_load(void) {
    clock_gettime(CLOCK_MONOTONIC, &t0);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9;
}

static void defaults(void) {
    for (int i = 0; i < MAX_GPUS; i++) {
        struct gpu *g = &gpus[i];
        memset(g, 0, sizeof *g);
        g->index = i;
        snprintf(g->name, sizeof g->name, "NVIDIA H100 80GB HBM3");
        g->arch = 9;
        g->pci_device_id = 0x233010de;
        g->power_mw = 300000 + 1000ULL * i;
        g->step_mw = 1000;
        g->energy_start_mj = 1000000ULL * (i + 1);
        g->lost_from_s = -1;
        g->lost_until_s = 1e300;
        g->energy_reset_at_s = -1;
        g->energy_jump_at_s = -1;
        g->energy_jump_mj = 0;
        g->power_limit_mw = 700000;
        g->power_limit_at_s = -1;
        g->power_limit_later_mw = 0;
        g->replaced_at_s = -1;
        g->procs = 1;
    }
    gpu_count = 1;
    init_error = 0;
    driver_down_from_s = -1;
    driver_down_until_s = 1e300;
    driver_down_error = NVML_ERROR_DRIVER_NOT_LOADED;
}

static int driver_down(void) {
    double t = now_s();
    return driver_down_from_s >= 0 && t >= driver_down_from_s && t < driver_down_until_s;
}

static void apply(struct gpu *g, const char *key, const char *value) {
    if (!strcmp(key, "name")) snprintf(g->name, sizeof g->name, "%s", value);
    else if (!strcmp(key, "arch")) g->arch = (unsigned)strtoul(value, NULL, 0);
    else if (!strcmp(key, "pci_device_id")) g->pci_device_id = (unsigned)strtoul(value, NULL, 0);
    else if (!strcmp(key, "power_mw")) g->power_mw = strtoull(value, NULL, 0);
    else if (!strcmp(key, "step_mw")) g->step_mw = strtoull(value, NULL, 0);
    else if (!strcmp(key, "energy_start_mj")) g->energy_start_mj = strtoull(value, NULL, 0);
    else if (!strcmp(key, "lost_from_s")) g->lost_from_s = strtod(value, NULL);
    else if (!strcmp(key, "lost_until_s")) g->lost_until_s = strtod(value, NULL);
    else if (!strcmp(key, "energy_reset_at_s")) g->energy_reset_at_s = strtod(value, NULL);
    else if (!strcmp(key, "power_limit_mw")) g->power_limit_mw = (unsigned)strtoul(value, NULL, 0);
    else if (!strcmp(key, "power_limit_at_s")) {
        char *end;
        g->power_limit_at_s = strtod(value, &end);
        g->power_limit_later_mw = (unsigned)strtoul(end, NULL, 0);
    }
    else if (!strcmp(key, "energy_jump_at_s")) {
        char *end;
        g->energy_jump_at_s = strtod(value, &end);
        g->energy_jump_mj = strtoull(end, NULL, 0);
    }
    else if (!strcmp(key, "replaced_at_s")) g->replaced_at_s = strtod(value, NULL);
    else if (!strcmp(key, "procs")) g->procs = (unsigned)strtoul(value, NULL, 0);
    else if (!strcmp(key, "fail")) {
        char what[64];
        int code = 0;
        long times = 1;
        if (sscanf(value, "%63s %d %ld", what, &code, &times) < 2) return;
        for (int f = 0; f < F_COUNT; f++)
            if (!strcmp(what, feature_names[f])) {
                g->fail_code[f] = code;
                g->fail_left[f] = times;
            }
    }
    else if (!strcmp(key, "unsupported")) {
        for (int f = 0; f < F_COUNT; f++)
            if (!strcmp(value, feature_names[f])) g->unsupported[f] = 1;
    }
}

static void load_script(void) {
    defaults();
    const char *path = getenv("FAKE_NVML_CONFIG");
    if (!path) return;
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        line[strcspn(line, "\r\n")] = 0;
        char word[64], who[32], key[64];
        int n = 0;
        if (sscanf(line, "%63s%n", word, &n) != 1) continue;
        char *rest = line + n;
        while (*rest == ' ' || *rest == '\t') rest++;
        if (!strcmp(word, "count")) {
            gpu_count = (unsigned)strtoul(rest, NULL, 0);
            if (gpu_count > MAX_GPUS) gpu_count = MAX_GPUS;
        } else if (!strcmp(word, "driver")) {
            snprintf(driver_version, sizeof driver_version, "%s", rest);
        } else if (!strcmp(word, "init_error")) {
            init_error = (int)strtol(rest, NULL, 0);
        } else if (!strcmp(word, "driver_down_from_s")) {
            driver_down_from_s = strtod(rest, NULL);
        } else if (!strcmp(word, "driver_down_until_s")) {
            driver_down_until_s = strtod(rest, NULL);
        } else if (!strcmp(word, "driver_down_error")) {
            driver_down_error = (int)strtol(rest, NULL, 0);
        } else if (!strcmp(word, "gpu")) {
            int m = 0;
            if (sscanf(rest, "%31s %63s %n", who, key, &m) < 2) continue;
            const char *value = rest + m;
            if (!strcmp(who, "all")) {
                for (int i = 0; i < MAX_GPUS; i++) apply(&gpus[i], key, value);
            } else {
                unsigned i = (unsigned)strtoul(who, NULL, 0);
                if (i < MAX_GPUS) apply(&gpus[i], key, value);
            }
        }
    }
    fclose(f);
}

/* -- library ------------------------------------------------------------------------------ */

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    load_script();
    if (init_error) return init_error;
    if (driver_down()) return driver_down_error;
    initialised++;
    const char *log_path = getenv("FAKE_NVML_LOG");
    if (log_path && log_fd < 0) log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    return NVML_SUCCESS;
}
nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
nvmlReturn_t nvmlInit(void) { return nvmlInitWithFlags(0); }

nvmlReturn_t nvmlShutdown(void) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    initialised--;
    return NVML_SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t r) {
    switch (r) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    default: return "Unknown Error";
    }
}

static nvmlReturn_t copy_str(char *dst, unsigned len, const char *src) {
    if (!dst) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(src) + 1 > len) return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(dst, src, strlen(src) + 1);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int len) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    if (driver_down()) return driver_down_error;
    return copy_str(version, len, driver_version);
}
nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned int len) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    return copy_str(version, len, "12.555.42.06");
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    if (driver_down()) return driver_down_error;
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    *count = gpu_count;
    return NVML_SUCCESS;
}
nvmlReturn_t nvmlDeviceGetCount(unsigned int *count) { return nvmlDeviceGetCount_v2(count); }

/* -- devices --------------------------------------------------------------------------------- */

typedef struct gpu *nvmlDevice_t;

static int lost(const struct gpu *g) {
    double t = now_s();
    return g->lost_from_s >= 0 && t >= g->lost_from_s && t < g->lost_until_s;
}

/* Common checks at the top of every device call. */
#define DEVICE_CALL(dev, feature)                                            \
    do {                                                                     \
        if (!initialised) return NVML_ERROR_UNINITIALIZED;                   \
        if (driver_down()) return driver_down_error;                         \
        if (!(dev)) return NVML_ERROR_INVALID_ARGUMENT;                      \
        if (lost(dev)) return NVML_ERROR_GPU_IS_LOST;                        \
        if ((feature) >= 0 && (dev)->unsupported[(feature)]) return NVML_ERROR_NOT_SUPPORTED; \
        if ((feature) >= 0 && (dev)->fail_left[(feature)] != 0) {          \
            if ((dev)->fail_left[(feature)] > 0) (dev)->fail_left[(feature)]--; \
            return (dev)->fail_code[(feature)];                              \
        }                                                                    \
    } while (0)

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    if (driver_down()) return driver_down_error;
    if (index >= gpu_count || !device) return NVML_ERROR_INVALID_ARGUMENT;
    if (lost(&gpus[index])) return NVML_ERROR_GPU_IS_LOST;
    *device = &gpus[index];
    return NVML_SUCCESS;
}
nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *device) {
    return nvmlDeviceGetHandleByIndex_v2(index, device);
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t dev, char *uuid, unsigned int len) {
    DEVICE_CALL(dev, -1);
    char buf[96];
    int replaced = dev->replaced_at_s >= 0 && now_s() >= dev->replaced_at_s;
    snprintf(buf, sizeof buf, "GPU-fa4e0000-0000-4000-8000-%012x", dev->index + (replaced ? 0x100000 : 0));
    return copy_str(uuid, len, buf);
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t dev, char *name, unsigned int len) {
    DEVICE_CALL(dev, -1);
    return copy_str(name, len, dev->name);
}

nvmlReturn_t nvmlDeviceGetSerial(nvmlDevice_t dev, char *serial, unsigned int len) {
    DEVICE_CALL(dev, F_SERIAL);
    char buf[32];
    snprintf(buf, sizeof buf, "16540000%05d", dev->index);
    return copy_str(serial, len, buf);
}

typedef struct {
    char busIdLegacy[16];
    unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t dev, nvmlPciInfo_t *pci) {
    DEVICE_CALL(dev, -1);
    memset(pci, 0, sizeof *pci);
    pci->bus = 0x18 + dev->index;
    pci->pciDeviceId = dev->pci_device_id;
    pci->pciSubSystemId = 0x16c110de;
    snprintf(pci->busId, sizeof pci->busId, "00000000:%02X:00.0", pci->bus & 0xff);
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "0000:%02X:00.0", pci->bus & 0xff);
    return NVML_SUCCESS;
}
nvmlReturn_t nvmlDeviceGetPciInfo_v2(nvmlDevice_t dev, nvmlPciInfo_t *pci) { return nvmlDeviceGetPciInfo_v3(dev, pci); }
nvmlReturn_t nvmlDeviceGetPciInfo(nvmlDevice_t dev, nvmlPciInfo_t *pci) { return nvmlDeviceGetPciInfo_v3(dev, pci); }

nvmlReturn_t nvmlDeviceGetArchitecture(nvmlDevice_t dev, unsigned int *arch) {
    DEVICE_CALL(dev, F_ARCH);
    *arch = dev->arch;
    return NVML_SUCCESS;
}

static unsigned long long power_now_mw(const struct gpu *g) {
    return g->power_mw + g->step_mw * ((unsigned long long)(now_s() * 10.0) % 5);
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t dev, unsigned int *power) {
    DEVICE_CALL(dev, F_POWER_USAGE);
    *power = (unsigned int)power_now_mw(dev);
    return NVML_SUCCESS;
}

typedef struct {
    unsigned int fieldId;
    unsigned int scopeId;
    long long timestamp;
    long long latencyUsec;
    unsigned int valueType;
    unsigned int nvmlReturn;
    union { double d; unsigned int ui; unsigned long ul; unsigned long long ull; long long sll; int si; unsigned short us; } value;
} nvmlFieldValue_t;

nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t dev, int count, nvmlFieldValue_t *values) {
    DEVICE_CALL(dev, F_FIELD_VALUES);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    for (int i = 0; i < count; i++) {
        nvmlFieldValue_t *v = &values[i];
        v->timestamp = (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
        v->latencyUsec = 0;
        v->valueType = 1; /* NVML_VALUE_TYPE_UNSIGNED_INT */
        if (v->fieldId == 185 && !dev->unsupported[F_POWER_AVERAGE]) {
            v->nvmlReturn = NVML_SUCCESS;
            v->value.ui = (unsigned int)(dev->power_mw + 2 * dev->step_mw);
        } else if (v->fieldId == 186 && !dev->unsupported[F_POWER_INSTANT]) {
            v->nvmlReturn = NVML_SUCCESS;
            v->value.ui = (unsigned int)power_now_mw(dev);
        } else {
            v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
        }
    }
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t dev, unsigned long long *energy) {
    DEVICE_CALL(dev, F_ENERGY);
    double t = now_s();
    double reset = dev->energy_reset_at_s;
    if (driver_down_from_s >= 0 && t >= driver_down_until_s && driver_down_until_s > reset)
        reset = driver_down_until_s; /* the driver was reloaded */
    if (dev->replaced_at_s >= 0 && t >= dev->replaced_at_s && dev->replaced_at_s > reset)
        reset = dev->replaced_at_s; /* another board, with its own counter */
    if (reset >= 0 && t >= reset)
        *energy = (unsigned long long)((double)dev->power_mw * (t - reset));
    else
        *energy = dev->energy_start_mj + (unsigned long long)((double)dev->power_mw * t);
    if (dev->energy_jump_at_s >= 0 && t >= dev->energy_jump_at_s)
        *energy += dev->energy_jump_mj;
    if (log_fd >= 0) {
        char buf[64];
        int n = snprintf(buf, sizeof buf, "E %d %llu\n", dev->index, *energy);
        if (write(log_fd, buf, (size_t)n) != n) { /* best effort */ }
    }
    return NVML_SUCCESS;
}

typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t dev, nvmlUtilization_t *u) {
    DEVICE_CALL(dev, F_UTILIZATION);
    u->gpu = 90 + dev->index % 10;
    u->memory = 40 + dev->index % 10;
    return NVML_SUCCESS;
}

typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t dev, nvmlMemory_t *m) {
    DEVICE_CALL(dev, F_MEMORY);
    m->total = 85899345920ULL;
    m->used = 42949672960ULL + (unsigned long long)dev->index * 1048576ULL;
    m->free = m->total - m->used;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t dev, int sensor, unsigned int *temp) {
    DEVICE_CALL(dev, F_TEMPERATURE);
    if (sensor != 0) return NVML_ERROR_INVALID_ARGUMENT;
    *temp = 55 + dev->index % 10;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t dev, int type, unsigned int *clock) {
    DEVICE_CALL(dev, F_CLOCKS);
    if (type == 1) *clock = 1980;      /* NVML_CLOCK_SM */
    else if (type == 2) *clock = 2619; /* NVML_CLOCK_MEM */
    else if (type == 0) *clock = 1755; /* NVML_CLOCK_GRAPHICS */
    else return NVML_ERROR_INVALID_ARGUMENT;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t dev, unsigned int *limit) {
    DEVICE_CALL(dev, F_POWER_LIMIT);
    *limit = dev->power_limit_at_s >= 0 && now_s() >= dev->power_limit_at_s ? dev->power_limit_later_mw
                                                                             : dev->power_limit_mw;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t dev, unsigned long long *reasons) {
    DEVICE_CALL(dev, F_CLOCK_EVENTS);
    *reasons = 0x4ULL; /* SW power cap */
    return NVML_SUCCESS;
}
nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t dev, unsigned long long *reasons) {
    return nvmlDeviceGetCurrentClocksEventReasons(dev, reasons);
}

typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlProcessInfo_t;

#define MAX_PIDS 256
struct pid_line { unsigned gpu, pid; int sm_util; };

/* The FAKE_NVML_PIDS file's lines for GPU `gpu` (at most MAX_PIDS); -1 when the variable is unset. */
static int read_pids(unsigned gpu, struct pid_line *out) {
    const char *path = getenv("FAKE_NVML_PIDS");
    if (!path) return -1;
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[128];
    int n = 0;
    while (n < MAX_PIDS && fgets(line, sizeof line, f)) {
        struct pid_line p = {0, 0, -1};
        int got = sscanf(line, "%u %u %d", &p.gpu, &p.pid, &p.sm_util);
        if (got >= 2 && p.gpu == gpu) out[n++] = p;
    }
    fclose(f);
    return n;
}

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t dev, unsigned int *count, nvmlProcessInfo_t *infos) {
    DEVICE_CALL(dev, F_PROCESSES);
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    struct pid_line pids[MAX_PIDS];
    int listed = read_pids((unsigned)dev->index, pids);
    unsigned n = listed >= 0 ? (unsigned)listed : dev->procs;
    if (*count < n || (n && !infos)) {
        *count = n;
        return n ? NVML_ERROR_INSUFFICIENT_SIZE : NVML_SUCCESS;
    }
    for (unsigned k = 0; k < n; k++) {
        infos[k].pid = listed >= 0 ? pids[k].pid : 1000 + (unsigned)dev->index * 10 + k;
        infos[k].usedGpuMemory = 1073741824ULL * (k + 1);
        infos[k].gpuInstanceId = 0xFFFFFFFFu;
        infos[k].computeInstanceId = 0xFFFFFFFFu;
    }
    *count = n;
    return NVML_SUCCESS;
}

typedef struct {
    unsigned int pid;
    unsigned long long timeStamp;
    unsigned int smUtil, memUtil, encUtil, decUtil;
} nvmlProcessUtilizationSample_t;

#define NVML_ERROR_NOT_FOUND 6

nvmlReturn_t nvmlDeviceGetProcessUtilization(nvmlDevice_t dev, nvmlProcessUtilizationSample_t *samples,
                                             unsigned int *count, unsigned long long lastSeen) {
    (void)lastSeen;
    DEVICE_CALL(dev, F_PROCESS_UTILIZATION);
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    struct pid_line pids[MAX_PIDS];
    int listed = read_pids((unsigned)dev->index, pids);
    unsigned n = 0;
    for (int k = 0; k < listed; k++)
        if (pids[k].sm_util >= 0) pids[n++] = pids[k];
    if (n == 0) return NVML_ERROR_NOT_FOUND;
    if (!samples || *count < n) {
        *count = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    for (unsigned k = 0; k < n; k++) {
        samples[k].pid = pids[k].pid;
        samples[k].timeStamp = (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000ULL;
        samples[k].smUtil = (unsigned)pids[k].sm_util;
        samples[k].memUtil = samples[k].encUtil = samples[k].decUtil = 0;
    }
    *count = n;
    return NVML_SUCCESS;
}
