//! The words of the page, Chinese beside English, taken from
//! `docs/glossary.md` (the identifiers never change with the language).

use axum::http::StatusCode;
use scoring::{Code, Grade, MeeLevel};

/// 绿码 / 黄码 / 红码 with the English beside it.
pub fn code(code: Code) -> (&'static str, &'static str) {
    match code {
        Code::Green => ("绿码", "green code"),
        Code::Yellow => ("黄码", "yellow code"),
        Code::Red => ("红码", "red code"),
    }
}

/// The CSS class of a code's badge (its colour; the text says it too, so
/// the colour is never the only signal).
pub fn code_class(code: Code) -> &'static str {
    match code {
        Code::Green => "green",
        Code::Yellow => "yellow",
        Code::Red => "red",
    }
}

/// A code's symbol, a second non-colour signal beside the text.
pub fn code_symbol(code: Code) -> &'static str {
    match code {
        Code::Green => "✓",
        Code::Yellow => "!",
        Code::Red => "✕",
    }
}

/// 诚信 / 良好 / 警示 / 不良.
pub fn grade(grade: Grade) -> (&'static str, &'static str) {
    match grade {
        Grade::Integrity => ("诚信", "trustworthy"),
        Grade::Good => ("良好", "good"),
        Grade::Warning => ("警示", "warning"),
        Grade::Poor => ("不良", "poor"),
    }
}

/// The MEE 2013 办法's four levels: the colour in words (绿牌 …), the
/// level's name (环保诚信 …) and both in English. The words are the
/// level's, whatever grade a model maps to it.
pub fn mee_level(level: MeeLevel) -> (&'static str, &'static str, &'static str) {
    match level {
        MeeLevel::Green => ("绿牌", "环保诚信", "green: environmental integrity"),
        MeeLevel::Blue => ("蓝牌", "环保良好", "blue: good"),
        MeeLevel::Yellow => ("黄牌", "环保警示", "yellow: warning"),
        MeeLevel::Red => ("红牌", "环保不良", "red: poor"),
    }
}

/// The CSS class of the MEE level's badge (the words say it too).
pub fn mee_level_class(level: MeeLevel) -> &'static str {
    match level {
        MeeLevel::Green => "mee-green",
        MeeLevel::Blue => "mee-blue",
        MeeLevel::Yellow => "mee-yellow",
        MeeLevel::Red => "mee-red",
    }
}

/// The Chinese words of a record kind of model `ecocode-2026.1` (and of
/// the model's correction lines); the identifier itself when unknown.
pub fn kind(kind: &str) -> &str {
    match kind {
        "exceedance.daily" => "在线监测日均值超标",
        "monitoring.missing_day" => "在线监测数据缺失（日）",
        "monitoring.insufficient_day" => "有效小时数据不足（日）",
        "monitoring.excused_day" => "平台故障免责（日）",
        "penalty.warning" => "警告、责令改正",
        "penalty.fine" => "罚款",
        "penalty.daily_continuous" => "按日连续处罚",
        "enforcement.seal" => "查封、扣押",
        "enforcement.limit_production" => "限制生产",
        "enforcement.suspend" => "停产整治",
        "incident.general" => "一般突发环境事件",
        "incident.major" => "较大及以上突发环境事件",
        "complaint.verified" => "信访投诉经查属实",
        "complaint.repeated" => "同一问题多次投诉属实",
        "inspection.finding" => "现场检查发现问题",
        "rectification.overdue" => "逾期未完成整改",
        "permit.report_late" => "排污许可执行报告未按时提交",
        "disclosure.annual_late" => "年度环境信息未按时依法披露",
        "disclosure.temporary_late" => "临时环境信息未按时依法披露",
        "disclosure.false" => "环境信息披露不实",
        "veto.crime" => "涉嫌环境污染犯罪，移送司法机关",
        "veto.license_revoked" => "排污许可证被吊销",
        "veto.bypass" => "通过暗管、渗井等逃避监管的方式排污",
        "veto.illegal_hazardous_waste" => "非法转移、处置危险废物",
        "veto.no_eia" => "未依法进行环境影响评价擅自开工建设（未批先建）",
        "veto.data_fraud" => "篡改、伪造自动监测数据",
        "commitment.clean_year" => "连续一年无环境违法记录",
        "certification.iso14001" => "ISO 14001 环境管理体系认证",
        "award.environmental" => "环境保护表彰奖励",
        "dispute.opened" => "提出异议",
        "dispute.resolved" => "异议处理结果",
        "record.voided" => "记录撤销",
        "rectification.submitted" => "提交整改材料",
        "rectification.verified" => "整改验收通过",
        "repair.granted" => "信用修复",
        "clamp" => "得分限于 0–100",
        "cap:bonus" => "加分上限",
        k if k.starts_with("cap:") => "同类扣分上限",
        other => other,
    }
}

/// The title of an error page.
pub fn status_title(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "请求有误 / Bad request",
        401 => "需要登录 / Sign-in needed",
        403 => "无权访问 / Not allowed",
        404 => "未找到 / Not found",
        409 => "已存在 / Already exists",
        413 => "请求过大 / Request too large",
        422 => "暂不能办理 / Not possible now",
        429 => "请求过于频繁 / Too many requests",
        503 => "暂不可用 / Unavailable",
        _ => "出错了 / Something went wrong",
    }
}
