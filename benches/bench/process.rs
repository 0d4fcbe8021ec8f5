//! What a process cost: CPU seconds and peak RSS, read from /proc while it still runs.

pub struct Cost {
    pub cpu_seconds: f64,
    pub peak_rss_mib: f64,
}

pub fn cost(pid: u32) -> Cost {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ") ".
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split(' ').collect())
        .unwrap_or_default();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the name.
    let clock_ticks = 100.0;
    let cpu_seconds = (ticks(11) + ticks(12)) / clock_ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let peak_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    Cost {
        cpu_seconds,
        peak_rss_mib: peak_kib / 1024.0,
    }
}
