// Registration form: add product lines without a page reload, and prefill each line's value
// from the list price × quantity until the dealer types a value of their own.
// Without JavaScript the form works the same: the "Add a product line" button posts back and the
// server leaves the value empty lines to list price × quantity.
(function () {
  "use strict";

  function prefill(row) {
    var select = row.querySelector("select");
    var quantity = row.querySelector("input[name$='-quantity']");
    var value = row.querySelector("input[name$='-value']");
    if (!select || !quantity || !value) return;
    function update() {
      if (value.dataset.touched === "1") return;
      var option = select.options[select.selectedIndex];
      var price = option ? parseFloat(option.getAttribute("data-price")) : NaN;
      var qty = parseInt(quantity.value, 10);
      value.value = !isNaN(price) && qty > 0 ? (price * qty).toFixed(2) : "";
    }
    value.addEventListener("input", function () { value.dataset.touched = value.value ? "1" : ""; });
    select.addEventListener("change", update);
    quantity.addEventListener("input", update);
    if (value.value) value.dataset.touched = "1";
  }

  document.querySelectorAll("table[data-formset-prefix]").forEach(function (table) {
    var prefix = table.getAttribute("data-formset-prefix");
    var body = table.querySelector("[data-formset-body]");
    var total = document.querySelector("input[name='" + prefix + "-TOTAL_FORMS']");
    var max = document.querySelector("input[name='" + prefix + "-MAX_NUM_FORMS']");
    var template = table.parentNode.parentNode.querySelector("template[data-formset-empty]");
    var add = table.parentNode.parentNode.querySelector("[data-formset-add]");
    body.querySelectorAll("[data-formset-form]").forEach(prefill);
    if (!template || !add || !total) return;
    add.addEventListener("click", function (event) {
      event.preventDefault();
      var index = parseInt(total.value, 10);
      if (max && index >= parseInt(max.value, 10)) return;
      var html = template.innerHTML.replace(/__prefix__/g, String(index));
      var holder = document.createElement("tbody");
      holder.innerHTML = html;
      var row = holder.firstElementChild;
      body.appendChild(row);
      total.value = String(index + 1);
      prefill(row);
      var first = row.querySelector("select");
      if (first) first.focus();
    });
  });
})();
